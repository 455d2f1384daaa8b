"""Re-running a recorded session: same or other actors, new answers as context, recorded as a session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sessions.helpers import ask, context_actor, scripted
from workbench.actors import ActorState
from workbench.errors import RuntimeUnavailable, SpecError
from workbench.runtimes.registry import RuntimeEntry, register_runtime, unregister_runtime
from workbench.runtimes.types import ChatMessage, GenerationOptions
from workbench.sessions.playback import transcript
from workbench.sessions.recorder import SessionRecorder
from workbench.sessions.rerun import RerunProgress, plan_actors, rerun_session
from workbench.sessions.schema import ChatSession, PaneRecord, PromptEvent
from workbench.sessions.store import load_session


async def record_session(folder: Path) -> ChatSession:
    """Pane a: a two-turn conversation with context:A. Pane b: scripted:echo, a failing turn, then one more."""
    a, b = context_actor("A"), scripted()
    recorder = SessionRecorder(folder, "recorded", [PaneRecord(id="a", spec=a.spec), PaneRecord(id="b", spec=b.spec)])
    recorder.attach("a", a)
    recorder.attach("b", b)
    first = await ask(recorder, "a", a, "one", options=GenerationOptions(temperature=0.0))
    await ask(recorder, "a", a, "two", [{"role": "user", "content": "one"}, {"role": "assistant", "content": first.text}])
    await ask(recorder, "b", b, "please FAIL here")
    await ask(recorder, "b", b, "still fine")
    recorder.save()
    recorder.close()
    await a.stop()
    await b.stop()
    return recorder.session()


async def test_rerun_against_another_actor_uses_its_own_answers_as_context(tmp_path: Path, test_runtimes: None) -> None:
    session = await record_session(tmp_path / "recorded")
    other = context_actor("B")
    result = await rerun_session(session, {"a": other}, folder=tmp_path / "reruns")

    assert result.specs == {"a": "context:B", "b": "scripted:echo"}
    a, b = result.by_pane()["a"], result.by_pane()["b"]
    assert a[1].recorded.text == "A saw user=one / assistant=A saw user=one / user=two"
    assert a[1].new.text == "B saw user=one / assistant=B saw user=one / user=two"
    assert [c.new.status for c in a] == ["done", "done"]
    assert a[0].new.metrics is not None and a[0].new.metrics.output_tokens == 3  # "B saw user=one"
    assert a[0].new.options.temperature == 0.0  # the recorded options go with the prompt
    assert [(c.recorded.status, c.new.status) for c in b] == [("error", "error"), ("done", "done")]
    assert b[0].new.error == "scripted failure" and b[1].new.text == "still fine"
    assert other.state != ActorState.STOPPED  # an actor we were given is left running
    await other.stop()

    assert result.path is not None and result.path.parent == tmp_path / "reruns"
    saved = load_session(result.path)
    assert saved.id == result.session.id != session.id
    assert saved.name.startswith("recorded re-run ")
    assert [(pane.id, pane.spec) for pane in saved.panes] == [("a", "context:B"), ("b", "scripted:echo")]
    replayed = transcript(saved)
    assert [t.text for t in replayed["a"]] == [c.new.text for c in a]
    assert [t.status for t in replayed["b"]] == ["error", "done"]
    assert list((tmp_path / "reruns").iterdir()) == [result.path]  # saved: no journal left behind


async def test_rerun_on_the_recorded_specs_reproduces_a_deterministic_session(tmp_path: Path, test_runtimes: None) -> None:
    session = await record_session(tmp_path)
    progress: list[RerunProgress] = []
    result = await rerun_session(session, folder=tmp_path, name="again", on_progress=progress.append)
    assert result.path == tmp_path / "again.json"
    for comparison in result.comparisons:
        assert (comparison.new.text, comparison.new.status) == (comparison.recorded.text, comparison.recorded.status)
    pane_a = [p for p in progress if p.pane == "a"]
    assert [p.kind for p in pane_a if p.kind != "chunk"] == ["started", "finished", "started", "finished"]
    first_turn = pane_a[: [p.kind for p in pane_a].index("finished") + 1]
    assert "".join(p.text for p in first_turn) == result.comparisons[0].new.text
    assert first_turn[-1].turn is not None and first_turn[-1].turn.ok


async def test_one_spec_for_every_pane(tmp_path: Path, test_runtimes: None) -> None:
    session = await record_session(tmp_path)
    result = await rerun_session(session, ["context:C"], folder=tmp_path / "c",
                                 options=GenerationOptions(max_tokens=50))
    assert result.specs == {"a": "context:C", "b": "context:C"}
    assert result.by_pane()["b"][1].new.text == "C saw user=still fine"
    prompts = [e for e in load_session(result.path).events if isinstance(e, PromptEvent)]
    assert {p.options.max_tokens for p in prompts} == {50}
    assert [p.options.temperature for p in prompts if p.pane == "a"] == [0.0, None]


async def test_actor_plans_that_cannot_work_are_refused(tmp_path: Path) -> None:
    session = ChatSession(id="s", panes=[PaneRecord(id="a", spec="x:1"), PaneRecord(id="b", spec="y:2")])
    with pytest.raises(SpecError, match="3 actors given for 2 panes"):
        plan_actors(session, ["context:A", "context:B", "context:C"])
    with pytest.raises(SpecError, match="no pane zz.*panes: a, b"):
        plan_actors(session, {"zz": "context:A"})
    with pytest.raises(SpecError, match="as a list"):
        plan_actors(session, "context:A")  # type: ignore[arg-type]
    assert plan_actors(session, ["p:1", "q:2"]) == {"a": "p:1", "b": "q:2"}
    assert plan_actors(session, None) == {"a": "x:1", "b": "y:2"}
    with pytest.raises(SpecError, match="unknown runtime"):
        await rerun_session(session, ["nosuch:model"], folder=tmp_path)
    register_runtime(RuntimeEntry("broken", "workbench.no_such_module:Actor", "needs what is not installed"))
    try:
        with pytest.raises(RuntimeUnavailable, match="cannot re-run on broken:m: its runtime does not load here"):
            await rerun_session(session, ["broken:m"], folder=tmp_path)
    finally:
        unregister_runtime("broken")
    assert list(tmp_path.iterdir()) == []


async def test_a_turn_the_new_actor_refuses_is_recorded_and_the_rest_go_on(tmp_path: Path) -> None:
    """Operations other than chat: generate re-runs as generate; an image summary the actor cannot
    do fails with NotSupported, recorded as that turn's error."""
    image = ChatMessage.model_validate({"role": "user", "content": [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]})
    session = ChatSession(id="ops", panes=[PaneRecord(id="a", spec="scripted:echo")], events=[
        PromptEvent(t=0.0, pane="a", correlation_id="1", operation="generate",
                    message=ChatMessage(role="user", content="raw words")),
        PromptEvent(t=1.0, pane="a", correlation_id="2", operation="summarize_image", message=image),
        PromptEvent(t=2.0, pane="a", correlation_id="3", operation="think",
                    message=ChatMessage(role="user", content="deep thought")),
    ])
    actor = scripted()
    result = await rerun_session(session, {"a": actor}, folder=tmp_path)
    new = [c.new for c in result.comparisons]
    assert [(t.operation, t.status) for t in new] == [("generate", "done"), ("summarize_image", "error"), ("think", "done")]
    assert new[0].text == "raw words"
    assert new[1].error_type == "NotSupported" and "summarize_image" in (new[1].error or "")
    assert (new[2].thinking, new[2].text) == ("considering", "deep thought")
    assert [t.status for t in transcript(load_session(result.path))["a"]] == ["done", "error", "done"]
    await actor.stop()


async def test_a_rerun_never_loses_its_record_to_a_name_clash(tmp_path: Path, test_runtimes: None) -> None:
    session = await record_session(tmp_path)
    first = await rerun_session(session, folder=tmp_path, name="same name")
    second = await rerun_session(session, folder=tmp_path, name="same name")
    assert (first.path, second.path) == (tmp_path / "same-name.json", tmp_path / "same-name-2.json")
    assert load_session(second.path).id == second.session.id != first.session.id


async def test_rerun_on_an_ollama_actor_over_loopback_http(tmp_path: Path, test_runtimes: None) -> None:
    """A different runtime family, named by spec: Ollama's REST API served by `workbench serve`."""
    from workbench.server.ollama_api import OllamaAPIServer

    served = context_actor("served")
    server = OllamaAPIServer([served], port=0)
    await server.start()
    try:
        session = await record_session(tmp_path)
        spec = f"ollama:served@{server.url}"
        result = await rerun_session(session, {"a": spec}, folder=tmp_path / "http")
    finally:
        await server.close()
        await served.stop()
    assert result.specs["a"] == f"ollama-rest:served@{server.url}"
    a = result.by_pane()["a"]
    assert [c.new.status for c in a] == ["done", "done"]
    assert a[1].new.text == "served saw user=one / assistant=served saw user=one / user=two"
    assert a[1].new.metrics is not None and a[1].new.metrics.ttft_s is not None
    assert load_session(result.path).panes[0].spec == result.specs["a"]
