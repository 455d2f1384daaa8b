"""`read` turns in sessions (format version 2): recorded like any turn, shown, re-run in order so
the turns after them see the context; version-1 files still load."""

from __future__ import annotations

import json
from pathlib import Path

from tests.sessions.helpers import ask, context_actor
from workbench.sessions.playback import transcript
from workbench.sessions.recorder import SessionRecorder
from workbench.sessions.rerun import rerun_session
from workbench.sessions.schema import SCHEMA_VERSION, PaneRecord
from workbench.sessions.store import load_session


async def test_a_read_turn_is_recorded_shown_and_rerun_ahead_of_the_question(tmp_path: Path) -> None:
    actor = context_actor("first")
    try:
        with SessionRecorder(tmp_path, "context", [PaneRecord(id="p1", spec=actor.spec)]) as recorder:
            recorder.attach("p1", actor)
            reply = actor.read("Fredville is the capital of Freedonia.")
            recorder.record_prompt("p1", "Fredville is the capital of Freedonia.",
                                   correlation_id=reply.correlation_id, operation="read")
            await reply
            answer = await ask(recorder, "p1", actor, "What is the capital?")
            path = recorder.save()
    finally:
        await actor.stop()
    assert answer.text == "first saw user=Fredville is the capital of Freedonia. / user=What is the capital?"
    saved = json.loads(path.read_text())
    assert saved["version"] == SCHEMA_VERSION >= 2  # read turns came with version 2
    session = load_session(path)
    read_turn, question = transcript(session)["p1"]
    assert (read_turn.operation, read_turn.status, read_turn.text) == ("read", "done", "")
    assert read_turn.prompt.text == "Fredville is the capital of Freedonia."
    assert question.text == answer.text

    again = context_actor("second")
    try:
        result = await rerun_session(session, {"p1": again}, folder=tmp_path)
    finally:
        await again.stop()
    new_read, new_question = transcript(result.session)["p1"]
    assert (new_read.operation, new_read.status) == ("read", "done")
    assert new_question.text == "second saw user=Fredville is the capital of Freedonia. / user=What is the capital?"


async def test_a_forget_turn_is_rerun_too(tmp_path: Path) -> None:
    actor = context_actor("first")
    try:
        with SessionRecorder(tmp_path, "forgetting", [PaneRecord(id="p1", spec=actor.spec)]) as recorder:
            recorder.attach("p1", actor)
            for operation, reply in (("read", actor.read("Secret plan.")), ("forget", actor.forget())):
                text = "Secret plan." if operation == "read" else ""
                recorder.record_prompt("p1", text, correlation_id=reply.correlation_id, operation=operation)
                await reply
            await ask(recorder, "p1", actor, "Anything?")
            session = recorder.session()
    finally:
        await actor.stop()
    again = context_actor("second")
    try:
        result = await rerun_session(session, {"p1": again}, folder=tmp_path)
    finally:
        await again.stop()
    assert [turn.operation for turn in transcript(result.session)["p1"]] == ["read", "forget", "chat"]
    assert transcript(result.session)["p1"][2].text == "second saw user=Anything?"


def test_a_version_1_session_and_journal_still_load(tmp_path: Path) -> None:
    event = {"kind": "prompt", "t": 0.5, "pane": "p1", "correlation_id": "c1", "operation": "chat",
             "message": {"role": "user", "content": "hi"}}
    old = {"format": "workbench.session", "version": 1, "id": "old", "name": "old one",
           "created_at": "2026-01-02T03:04:05Z", "workbench_version": "0.1.0",
           "panes": [{"id": "p1", "spec": "scripted:echo"}], "events": [event]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    session = load_session(tmp_path / "old.json")
    assert (session.version, session.name, session.turns) == (SCHEMA_VERSION, "old one", 1)
    header = {key: value for key, value in old.items() if key != "events"} | {"format": "workbench.session-journal"}
    (tmp_path / "old.journal.jsonl").write_text(json.dumps(header) + "\n" + json.dumps(event) + "\n")
    journal = load_session(tmp_path / "old.journal.jsonl")
    assert (journal.version, journal.turns) == (SCHEMA_VERSION, 1)
