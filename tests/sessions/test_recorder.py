"""SessionRecorder: journals prompts and the answers of the requests it recorded, saves by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.sessions.helpers import ask, scripted
from workbench.errors import MessageCancelled, SessionFileError
from workbench.metrics.sampler import ResourceSample
from workbench.runtimes.types import Completion, GenerationOptions
from workbench.sessions.playback import transcript
from workbench.sessions.recorder import SessionRecorder, slug
from workbench.sessions.schema import (
    CancelledEvent,
    DoneEvent,
    ErrorEvent,
    PaneEvent,
    PaneRecord,
    PromptEvent,
    SampleEvent,
)
from workbench.sessions.store import list_sessions, load_session


def kinds(events: list) -> list[str]:
    return [event.kind for event in events]


async def test_journal_loads_back_with_every_event(tmp_path: Path) -> None:
    actor = scripted()
    recorder = SessionRecorder(tmp_path, "first chat", [PaneRecord(id="a", spec=actor.spec)])
    recorder.attach("a", actor)
    answer = await ask(recorder, "a", actor, "hello there world", options=GenerationOptions(max_tokens=5))
    assert isinstance(answer, Completion)

    journal = load_session(recorder.journal_path)
    assert journal.id == recorder.id and journal.name == "first chat"
    assert [pane.id for pane in journal.panes] == ["a"]
    assert kinds(journal.events) == ["prompt", "chunk", "chunk", "chunk", "done"]
    assert journal.events == recorder.session().events
    prompt, *chunks, done = journal.events
    assert isinstance(prompt, PromptEvent) and prompt.message.text == "hello there world"
    assert prompt.options.max_tokens == 5
    assert {event.correlation_id for event in journal.events} == {prompt.correlation_id}
    assert "".join(chunk.text for chunk in chunks) == answer.text == "hello there world"
    assert isinstance(done, DoneEvent) and done.metrics is not None
    assert done.metrics.output_tokens == 3 and done.finish_reason == "stop"
    assert [event.t for event in journal.events] == sorted(event.t for event in journal.events)
    recorder.close()
    await actor.stop()


async def test_only_recorded_requests_are_journaled(tmp_path: Path) -> None:
    shared = scripted()
    recorder = SessionRecorder(tmp_path, "", [PaneRecord(id="a", spec=shared.spec), PaneRecord(id="b", spec=shared.spec)])
    recorder.attach("a", shared)
    recorder.attach("b", shared)
    other_caller = shared.chat("not part of the session")
    first = await ask(recorder, "a", shared, "alpha beta")
    second = await ask(recorder, "b", shared, "gamma")
    await other_caller
    assert isinstance(first, Completion) and isinstance(second, Completion)

    turns = transcript(load_session(recorder.journal_path))
    assert [(turn.prompt.text, turn.text, turn.status) for turn in turns["a"]] == [("alpha beta", "alpha beta", "done")]
    assert [(turn.prompt.text, turn.text, turn.status) for turn in turns["b"]] == [("gamma", "gamma", "done")]
    assert not any("not part" in getattr(event, "text", "") for event in recorder.session().events)
    assert recorder.pending() == []
    recorder.close()
    await shared.stop()


async def test_errors_and_cancellations_are_journaled_and_the_pane_goes_on(tmp_path: Path) -> None:
    actor = scripted(delay_s=0.05)
    recorder = SessionRecorder(tmp_path, "", [PaneRecord(id="a", spec=actor.spec)])
    recorder.attach("a", actor)
    failed = await ask(recorder, "a", actor, "please FAIL now")
    assert isinstance(failed, ValueError)

    slow = actor.chat("one two three four five six seven eight nine ten")
    recorder.record_prompt("a", "one two ...", correlation_id=slow.correlation_id)
    stream = aiter(slow)
    await anext(stream)
    slow.cancel()
    with pytest.raises(MessageCancelled):
        async for _ in stream:
            pass
    after = await ask(recorder, "a", actor, "still here")
    assert isinstance(after, Completion) and after.text == "still here"

    events = load_session(recorder.journal_path).events
    error = next(event for event in events if isinstance(event, ErrorEvent))
    assert error.error == "scripted failure" and error.error_type == "ValueError"
    assert sum(isinstance(event, CancelledEvent) for event in events) == 1
    turns = transcript(load_session(recorder.journal_path))["a"]
    assert [turn.status for turn in turns] == ["error", "cancelled", "done"]
    assert turns[0].text == "please"  # the word streamed before the failure
    assert turns[1].text.startswith("one")
    recorder.close()
    await actor.stop()


async def test_samples_and_late_panes_are_journaled(tmp_path: Path) -> None:
    recorder = SessionRecorder(tmp_path, "", [PaneRecord(id="a", spec="scripted:echo")])
    recorder.record_sample("a", ResourceSample(t=0.0, rss_bytes=123_456, cpu_percent=42.5))
    recorder.add_pane(PaneRecord(id="b", spec="scripted:other", title="second"))
    recorder.record_sample("b", ResourceSample(t=0.0, rss_bytes=1, cpu_percent=0.0))
    with pytest.raises(KeyError, match="no pane 'c'.*a, b"):
        recorder.record_sample("c", ResourceSample(t=0.0, rss_bytes=1, cpu_percent=0.0))
    with pytest.raises(ValueError, match="correlation id"):
        recorder.record_prompt("a", "hi", correlation_id="")

    loaded = load_session(recorder.journal_path)
    assert kinds(loaded.events) == ["sample", "pane", "sample"]
    sample = loaded.events[0]
    assert isinstance(sample, SampleEvent) and (sample.rss_bytes, sample.cpu_percent) == (123_456, 42.5)
    assert isinstance(loaded.events[1], PaneEvent)
    assert [(pane.id, pane.title) for pane in loaded.all_panes()] == [("a", ""), ("b", "second")]
    recorder.close()


async def test_save_writes_the_named_file_and_refuses_to_overwrite_another_session(tmp_path: Path) -> None:
    actor = scripted()
    recorder = SessionRecorder(tmp_path, "draft", [PaneRecord(id="a", spec=actor.spec)])
    recorder.attach("a", actor)
    await ask(recorder, "a", actor, "first question")
    path = recorder.save("Capital cities: France & Spain!")
    assert path == tmp_path / "capital-cities-france-spain.json"
    saved = load_session(path)
    assert saved.name == "Capital cities: France & Spain!" and saved.id == recorder.id
    assert saved.events == recorder.session().events
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file

    await ask(recorder, "a", actor, "second question")
    assert recorder.save() == path  # the same session again: updated in place
    assert load_session(path).turns == 2

    intruder = SessionRecorder(tmp_path, "other", [PaneRecord(id="x", spec=actor.spec)])
    intruder.add_pane(PaneRecord(id="y", spec=actor.spec))
    with pytest.raises(SessionFileError, match="already holds another session") as refused:
        intruder.save("capital cities: france & spain")
    assert refused.value.path == str(path)
    assert load_session(path).id == recorder.id
    assert intruder.save("capital cities: france & spain", overwrite=True) == path
    assert load_session(path).id == intruder.id

    path.write_text("{ not json", encoding="utf-8")
    with pytest.raises(SessionFileError, match="already holds another session"):
        recorder.save()
    intruder.close()
    recorder.close()
    await actor.stop()


async def test_close_keeps_the_journal_only_while_it_holds_unsaved_work(tmp_path: Path) -> None:
    actor = scripted()
    empty = SessionRecorder(tmp_path / "empty", "", [PaneRecord(id="a", spec=actor.spec)])
    empty.close()
    assert not empty.journal_path.exists()

    unsaved = SessionRecorder(tmp_path / "unsaved", "", [PaneRecord(id="a", spec=actor.spec)])
    unsaved.attach("a", unsaved_actor := scripted())
    await ask(unsaved, "a", unsaved_actor, "keep me")
    unsaved.close()
    found, problems = list_sessions(tmp_path / "unsaved")
    assert problems == [] and [(summary.journal, summary.turns) for summary in found] == [(True, 1)]
    with pytest.raises(ValueError, match="closed"):
        unsaved.record_prompt("a", "late", correlation_id="x")

    saved = SessionRecorder(tmp_path / "saved", "kept", [PaneRecord(id="a", spec=actor.spec)])
    saved.attach("a", actor)
    await ask(saved, "a", actor, "save me")
    saved.save()
    await ask(saved, "a", actor, "asked after the save")
    saved.close()
    assert [path.name for path in (tmp_path / "saved").iterdir()] == ["kept.json"]
    assert load_session(tmp_path / "saved" / "kept.json").turns == 2  # the named file got the rest too
    await actor.stop()
    await unsaved_actor.stop()


async def test_journal_cut_short_by_a_crash_still_loads(tmp_path: Path) -> None:
    actor = scripted()
    recorder = SessionRecorder(tmp_path, "", [PaneRecord(id="a", spec=actor.spec)])
    recorder.attach("a", actor)
    await ask(recorder, "a", actor, "alpha beta gamma")
    with open(recorder.journal_path, "a", encoding="utf-8") as stream:
        stream.write(json.dumps({"t": 1.0, "pane": "a", "kind": "chunk", "text": "half"})[:20])
    turn = transcript(load_session(recorder.journal_path))["a"][0]
    assert (turn.text, turn.status) == ("alpha beta gamma", "done")
    recorder.close()
    await actor.stop()


def test_slug() -> None:
    assert slug("My Chat: día 2 / v1.0") == "my-chat-d-a-2-v1-0"
    assert slug("///") == ""
    assert len(slug("x" * 200)) == 64
