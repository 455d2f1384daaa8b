"""Reading a session as a stream (issue 11: a 250 MB session took 4.7 GB to replay): the header at
once, events one at a time, exactly what `load_session` gives, whatever the buffer boundaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_sessions import make_session
from workbench.errors import SessionFileError
from workbench.sessions import SessionHeader, SessionJournal, load_session, save_session
from workbench.sessions.schema import SCHEMA_VERSION, ChunkEvent, SessionEvent
from workbench.sessions.store import _JSONScanner, stream_session


def streamed(path: Path) -> tuple[SessionHeader, list[SessionEvent]]:
    header, events = stream_session(path)
    return header, list(events)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_a_saved_session_streams_to_exactly_what_it_loads_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(_JSONScanner, "CHUNK", chunk)  # every value cut at every kind of boundary
    session = make_session()
    session = session.model_copy(update={"events": [*session.events, ChunkEvent(t=12345.678901, pane="p1", text="9")]})
    path = save_session(session, tmp_path / "s.json")
    loaded = load_session(path)
    header, events = streamed(path)
    assert header.model_dump() == loaded.model_dump(exclude={"events"})
    assert events == loaded.events


def test_a_journal_streams_and_a_cut_last_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "j.journal.jsonl"
    with SessionJournal(path, SessionHeader(id="j", name="journal")) as journal:
        for index in range(5):
            journal.append(ChunkEvent(t=index, pane="p", text="é" * index))
    path.write_bytes(path.read_bytes() + '{"kind": "chunk", "t": 9, "pane": "p", "text": "\u00e9'.encode()[:-1])
    header, events = streamed(path)
    assert header.name == "journal" and [e.text for e in events] == ["é" * i for i in range(5)]
    assert events == load_session(path).events


def test_a_file_in_another_key_order_still_reads(tmp_path: Path) -> None:
    data = json.loads(save_session(make_session(), tmp_path / "s.json").read_text())
    reordered = {"events": data.pop("events"), **data}
    path = tmp_path / "reordered.json"
    path.write_text(json.dumps(reordered))
    assert streamed(path)[1] == load_session(path).events


@pytest.mark.parametrize(
    ("mangle", "problem"),
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: text.replace('"pane": "p2"', '"pane": NaN', 1), "NaN is not valid JSON"),
        (lambda text: text.replace('"kind": "error"', '"kind": "teleport"', 1), "event 4 is not a valid session event"),
        (lambda text: text.rstrip().rstrip("}") + ', "extra": 1}', "'extra' after the events"),
        (lambda text: text + "[]", "extra data"),
        (lambda text: text.replace(f'"version": {SCHEMA_VERSION}', '"version": 9', 1), "unsupported version 9"),
    ],
)
def test_bad_files_raise_a_clear_error_while_streaming(tmp_path: Path, mangle, problem: str) -> None:  # noqa: ANN001
    path = save_session(make_session(), tmp_path / "s.json")
    path.write_text(mangle(path.read_text()))
    with pytest.raises(SessionFileError, match=problem) as raised:
        streamed(path)
    assert str(path) in str(raised.value)
