"""Session and benchmark files: round trips, the crash-safe journal, every kind of bad file, secrets."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from workbench.errors import SessionFileError
from workbench.metrics.request import RequestMetrics
from workbench.runtimes.types import ChatMessage, GenerationOptions, encode_data_url
from workbench.sessions import (
    BenchmarkConfig,
    BenchmarkRun,
    CancelledEvent,
    ChatSession,
    ChunkEvent,
    DoneEvent,
    ErrorEvent,
    LevelSummary,
    MachineInfo,
    PaneRecord,
    Percentiles,
    PromptEvent,
    RequestRecord,
    ResourceRecord,
    SampleEvent,
    SessionHeader,
    SessionJournal,
    list_sessions,
    load_benchmark,
    load_session,
    save_benchmark,
    save_session,
)
from workbench.sessions import store

SECRET = "sk-abcdefghijklmnopqrstuvwxyz0123"


def make_session(session_id: str = "s1") -> ChatSession:
    panes = [PaneRecord(id="p1", spec="torch:smollm2", title="torch", options=GenerationOptions(max_tokens=16)),
             PaneRecord(id="p2", spec="ollama:llama3.2:1b@http://127.0.0.1:11434")]
    image = encode_data_url(b"\x89PNG\r\n\x1a\n1234")
    events = [
        PromptEvent(t=0.0, pane="p1", correlation_id="c1",
                    message=ChatMessage(role="user", content=[{"type": "text", "text": "héllo 日本"},
                                                              {"type": "image_url", "image_url": {"url": image}}])),
        ChunkEvent(t=0.1, pane="p1", correlation_id="c1", text="Hi"),
        ChunkEvent(t=0.2, pane="p1", correlation_id="c1", thinking="hmm"),
        DoneEvent(t=0.3, pane="p1", correlation_id="c1", finish_reason="stop",
                  metrics=RequestMetrics(correlation_id="c1", ttft_s=0.1, e2e_s=0.3, itl_s=[0.1], output_tokens=2)),
        ErrorEvent(t=0.4, pane="p2", correlation_id="c2", error="not reachable", error_type="RuntimeUnreachable"),
        CancelledEvent(t=0.5, pane="p2", correlation_id="c3"),
        SampleEvent(t=0.6, pane="p1", rss_bytes=123, cpu_percent=45.5),
    ]
    return ChatSession(id=session_id, name="demo", panes=panes, events=events)


def make_run() -> BenchmarkRun:
    metrics = RequestMetrics(correlation_id="r1", ttft_s=0.2, e2e_s=1.0, itl_s=[0.1, 0.1], output_tokens=3)
    return BenchmarkRun(
        id="b1",
        machine=MachineInfo(cpu="test cpu", cores_logical=2, memory_bytes=24 << 30, os="Linux", python="3.11"),
        versions={"workbench": "0.1.0", "torch": "2.13.0"},
        config=BenchmarkConfig(actors=["torch:smollm2"], concurrency=[1, 2], max_tokens=8),
        records=[RequestRecord(actor="torch:smollm2", concurrency=1, prompt_index=0, ok=True, metrics=metrics),
                 RequestRecord(actor="torch:smollm2", concurrency=2, prompt_index=0, ok=False, error="boom")],
        samples=[ResourceRecord(actor="torch:smollm2", t=0.5, rss_bytes=1 << 28, cpu_percent=99.0)],
        summaries=[LevelSummary(actor="torch:smollm2", concurrency=1, requests=1, errors=0, duration_s=1.0,
                                request_throughput=1.0, output_tokens_per_s=3.0,
                                metrics={"ttft_s": Percentiles(p50=0.2, p90=0.2, p99=0.2, mean=0.2, count=1)})],
    )


# ----- round trips ---------------------------------------------------------------------------------------
def test_session_round_trip(tmp_path: Path) -> None:
    session = make_session()
    path = save_session(session, tmp_path / "s1.json")
    loaded = load_session(path)
    assert loaded == session
    assert loaded.turns == 1 and loaded.duration_s == 0.6
    assert loaded.events[0].message.images() == [b"\x89PNG\r\n\x1a\n1234"]
    assert "日本" in path.read_text(encoding="utf-8")
    assert not list(tmp_path.glob(".*.tmp"))


def test_benchmark_round_trip(tmp_path: Path) -> None:
    run = make_run()
    path = save_benchmark(run, tmp_path / "b1.json")
    assert load_benchmark(path) == run
    with pytest.raises(SessionFileError, match="not a workbench file of the expected kind"):
        load_session(path)  # a benchmark is not a session
    with pytest.raises(SessionFileError, match="expected workbench.benchmark"):
        load_benchmark(save_session(make_session(), tmp_path / "s.json"))


def test_journal_loads_as_a_session(tmp_path: Path) -> None:
    session = make_session("j1")
    header = SessionHeader(id="j1", name="demo", panes=session.panes[:1])
    with SessionJournal.create(tmp_path, header) as journal:
        for event in session.events:
            journal.append(event)
        journal.add_pane(session.panes[1])
    assert journal.closed
    with pytest.raises(ValueError, match="closed"):
        journal.append(session.events[0])
    loaded = load_session(tmp_path / "j1.journal.jsonl")
    assert loaded.format == "workbench.session"
    assert loaded.events[:-1] == session.events
    assert [pane.id for pane in loaded.all_panes()] == ["p1", "p2"]
    with pytest.raises(FileExistsError):  # a journal is never overwritten
        SessionJournal.create(tmp_path, header)


# ----- crashes while writing --------------------------------------------------------------------------------
WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from workbench.sessions import ChunkEvent, SessionHeader, SessionJournal

    journal = SessionJournal(Path(sys.argv[1]), SessionHeader(id="crash"))
    text = "é" * 20000  # long, multi-byte lines: a kill is likely to land mid-line
    n = 0
    while True:
        journal.append(ChunkEvent(t=n, pane="p1", correlation_id=str(n), text=text))
        n += 1
        if n == 20:
            print("written", flush=True)
    """
)


def test_journal_killed_mid_write_loads_up_to_its_last_complete_event(tmp_path: Path) -> None:
    path = tmp_path / "crash.journal.jsonl"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline() == "written\n"
    time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    data = path.read_bytes()
    complete_lines = data.count(b"\n")
    loaded = load_session(path)
    assert len(loaded.events) == complete_lines - 1 >= 20
    assert [event.correlation_id for event in loaded.events] == [str(n) for n in range(len(loaded.events))]


def test_journal_cut_at_any_byte_of_its_last_line_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "cut.journal.jsonl"
    with SessionJournal(path, SessionHeader(id="cut")) as journal:
        journal.append(ChunkEvent(t=0, pane="p", text="first"))
        journal.append(ChunkEvent(t=1, pane="p", text="日本語 — ünïcode"))
    data = path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    for cut in range(last_start, len(data)):  # every byte, including inside multi-byte characters
        path.write_bytes(data[:cut])
        loaded = load_session(path)
        assert [event.text for event in loaded.events] == ["first"], cut


# ----- bad files -------------------------------------------------------------------------------------------------
def good_session_data() -> dict:
    return json.loads(json.dumps(store.to_json_data(make_session())))


BAD_FILES: dict[str, tuple[bytes, str]] = {
    "empty.json": (b"", "not valid JSON"),
    "truncated.json": (json.dumps(good_session_data()).encode()[:-40], "not valid JSON"),
    "not_json.json": (b"hello, I am a text file\n", "not valid JSON"),
    "binary.json": (b"\x80\x04\x95\x00\x00\xff\xfe binary \x00", "not UTF-8"),
    "array.json": (b"[1, 2, 3]", "expected a JSON object, found list"),
    "wrong_format.json": (json.dumps({"format": "something.else", "version": 1}).encode(), "format 'something.else'"),
    "no_format.json": (json.dumps({"hello": "world"}).encode(), "format None"),
    "wrong_version.json": (json.dumps({**good_session_data(), "version": 99}).encode(), "unsupported version 99"),
    "bool_version.json": (json.dumps({**good_session_data(), "version": True}).encode(), "unsupported version True"),
    "nan.json": (json.dumps({**good_session_data(), "name": float("nan")}).encode(), "NaN is not valid JSON"),
    "deep.json": (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_each_kind_of_bad_file_is_a_clear_error_naming_the_file(tmp_path: Path, name: str) -> None:
    content, problem = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SessionFileError) as caught:
        load_session(path)
    assert problem in str(caught.value)
    assert str(path) in str(caught.value) and caught.value.path == str(path)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SessionFileError, match="no such file"):
        load_session(tmp_path / "absent.json")
    with pytest.raises(SessionFileError, match="no such file"):
        load_benchmark(tmp_path / "absent.json")


def test_schema_mismatch_names_the_field(tmp_path: Path) -> None:
    data = good_session_data()
    del data["panes"][1]["spec"]
    data["events"][1]["t"] = -1
    path = tmp_path / "mismatch.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SessionFileError) as caught:
        load_session(path)
    message = str(caught.value)
    assert "ChatSession schema" in message and "panes.1.spec" in message and "events.1" in message


def test_a_file_over_the_size_limit_is_refused_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with open(path, "wb") as stream:
        stream.truncate(store.MAX_FILE_BYTES + 1)  # sparse: large, yet costs no disk
    with pytest.raises(SessionFileError, match="more than the .* bytes allowed"):
        load_session(path)


def test_a_journal_with_a_corrupt_middle_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.journal.jsonl"
    with SessionJournal(path, SessionHeader(id="bad")) as journal:
        for index in range(4):
            journal.append(ChunkEvent(t=index, pane="p", text=str(index)))
    lines = path.read_text().splitlines(keepends=True)
    corrupt = lines[:2] + ['{"kind": "chunk", "t": 1, "pa\n'] + lines[3:]
    path.write_text("".join(corrupt))
    with pytest.raises(SessionFileError, match="line 3"):
        load_session(path)
    wrong_event = lines[:3] + ['{"kind": "teleport", "t": 1, "pane": "p"}\n'] + lines[4:]
    path.write_text("".join(wrong_event))
    with pytest.raises(SessionFileError, match="line 4 is not a valid session event"):
        load_session(path)
    path.write_text('{"format": "workbench.session-journal", "version": 99, "id": "x"}\n')
    with pytest.raises(SessionFileError, match="unsupported version 99"):
        load_session(path)
    path.write_text("")
    with pytest.raises(SessionFileError, match="empty journal"):
        load_session(path)


def test_loading_never_executes_anything(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    data = good_session_data()
    data["name"] = f"__import__('os').system('touch {marker}')"
    data["panes"][0]["title"] = "{{7*7}} ${jndi:ldap://x} !!python/object/apply:os.system"
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(data))
    loaded = load_session(path)
    assert loaded.name.startswith("__import__") and loaded.panes[0].title.startswith("{{7*7}}")
    pickled = tmp_path / "pickle.json"
    pickled.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")  # a pickle protocol-0 payload
    with pytest.raises(SessionFileError, match="not valid JSON"):
        load_session(pickled)
    extra = good_session_data()
    extra["__class__"] = "subprocess.Popen"
    path.write_text(json.dumps(extra))
    with pytest.raises(SessionFileError, match="__class__"):
        load_session(path)
    assert not marker.exists()


# ----- secrets -----------------------------------------------------------------------------------------------------
def test_no_secrets_are_written(tmp_path: Path) -> None:
    options = GenerationOptions(extra={"api_key": SECRET, "headers": {"Authorization": "Bearer abcdef0123456789"},
                                       "keep_alive": "5m"})
    session = ChatSession(
        id="sec",
        panes=[PaneRecord(id="p", spec="ollama:llama3@http://alice:hunter2pass@gpu-box:11434", options=options)],
        events=[ErrorEvent(t=0.1, pane="p", error=f"HTTP 401 for token {SECRET}")],
    )
    saved = save_session(session, tmp_path / "sec.json").read_text()
    with SessionJournal(tmp_path / "sec.journal.jsonl", SessionHeader(id="sec", panes=session.panes)) as journal:
        journal.append(session.events[0])
    journaled = (tmp_path / "sec.journal.jsonl").read_text()
    run = make_run()
    run.config.actors.append("ollama:llama3@http://alice:hunter2pass@gpu-box:11434")
    run.notes["token"] = "abc"
    benchmark = save_benchmark(run, tmp_path / "b.json").read_text()
    for text in (saved, journaled, benchmark):
        assert SECRET not in text and "hunter2pass" not in text and "abcdef0123456789" not in text
    assert "5m" in saved and "gpu-box:11434" in saved  # what is not secret is kept
    assert '"token": "[redacted]"' in benchmark
    assert load_session(tmp_path / "sec.json").panes[0].options.extra["api_key"] == "[redacted]"


def test_redaction_spares_model_names_that_look_like_key_prefixes(tmp_path: Path) -> None:
    spec = "transformers:hf-internal-testing/tiny-random-LlamaForCausalLM"
    session = ChatSession(id="names", panes=[PaneRecord(id="p", spec=spec)],
                          events=[ChunkEvent(t=0, pane="p", text="a task-management-system-overview")])
    loaded = load_session(save_session(session, tmp_path / "names.json"))
    assert loaded.panes[0].spec == spec and loaded.events[0].text == "a task-management-system-overview"


# ----- atomic saves -----------------------------------------------------------------------------------------------------
def test_a_failed_save_leaves_the_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_session(make_session(), tmp_path / "keep.json")
    before = path.read_bytes()

    def broken_replace(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.os, "replace", broken_replace)
    changed = make_session().model_copy(update={"name": "changed"})
    with pytest.raises(OSError, match="No space left"):
        save_session(changed, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.json"]  # no temporary file left behind

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(store.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output"):
        save_session(changed, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.json"]
    save_session(changed, path)
    assert load_session(path).name == "changed"


# ----- listing ------------------------------------------------------------------------------------------------------------
def test_list_sessions_reports_bad_files_instead_of_hiding_them(tmp_path: Path) -> None:
    save_session(make_session("older"), tmp_path / "older.json")
    newer = make_session("newer").model_copy(update={"created_at": make_session().created_at.replace(year=2100)})
    save_session(newer, tmp_path / "newer.json")
    with SessionJournal.create(tmp_path, SessionHeader(id="live")) as journal:
        journal.append(ChunkEvent(t=0, pane="p", text="x"))
    save_benchmark(make_run(), tmp_path / "bench.json")  # lives here too; not a session, not a problem
    (tmp_path / "broken.json").write_text('{"format": "workbench.session", "version": 1, "id": ')
    (tmp_path / "garbage.json").write_bytes(b"\x00\x01 not json at all")
    (tmp_path / "notes.txt").write_text("ignored: not a session file name")
    (tmp_path / ".hidden.json").write_text("{}")
    found, problems = list_sessions(tmp_path)
    assert [summary.path.name for summary in found][0] == "newer.json"
    assert sorted(summary.path.name for summary in found) == ["live.journal.jsonl", "newer.json", "older.json"]
    live = next(summary for summary in found if summary.journal)
    assert live.turns == 0 and live.name == "live"
    older = next(summary for summary in found if summary.path.name == "older.json")
    assert older.turns == 1 and older.panes == ["torch:smollm2", "ollama:llama3.2:1b@http://127.0.0.1:11434"]
    assert sorted(Path(problem.path).name for problem in problems) == ["broken.json", "garbage.json"]
    assert list_sessions(tmp_path / "absent") == ([], [])
