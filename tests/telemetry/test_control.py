"""`workbench ps|stop|restart|logs` against a running `workbench serve` (its API server on loopback,
in this process), the control API behind them, and the stream log they read."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.scripted import ScriptedActor
from workbench.actors.events import ActorEvent
from workbench.cli import main
from workbench.metrics.streamlog import StreamLog
from workbench.runtimes.types import Chunk
from workbench.server.app import APIServer


@pytest.fixture
async def served() -> AsyncIterator[APIServer]:
    actors = [ScriptedActor("echo", delay_s=0.005), ScriptedActor("other")]
    for actor in actors:
        actor.start()
        await actor.wait_ready()
    server = APIServer(actors, port=0)
    await server.start()
    yield server
    await server.close()
    for actor in actors:
        await actor.stop(drain=False)


async def chat(server: APIServer, model: str, text: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        return await client.post("/api/chat", json={"model": model, "stream": False,
                                                    "messages": [{"role": "user", "content": text}]})


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The real command line, run off the loop (it talks to the server this loop serves)."""
    code = await asyncio.to_thread(main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_ps_logs_stop_restart_against_a_running_serve(served: APIServer, capsys) -> None:
    assert (await chat(served, "echo", "hello there")).status_code == 200
    assert (await chat(served, "echo", "please FAIL now")).status_code >= 400

    # `workbench ps` as a real subprocess
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workbench.cli", "ps", "--url", served.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0].split() == ["NAME", "STATE", "QUEUE", "RUNNING", "PLACEMENT", "RSS", "REQ", "ERR", "RESTARTS"]
    echo = next(line.split() for line in lines if line.startswith("scripted:echo"))
    assert echo[1:5] == ["idle", "0", "-", "thread"]
    assert echo[5].isdigit() and echo[6] == "MiB"  # RSS of this process
    assert echo[7:] == ["2", "1", "0"]
    assert lines[-1].startswith("concurrency: 0 running, 0 waiting, limit ")

    code, out, _ = await cli(capsys, "logs", "echo", "--url", served.url)
    assert code == 0
    first, second = out.split("\n\n")
    assert "chat" in first.splitlines()[0] and " done · queued " in first.splitlines()[0]
    assert "> user: hello there" in first and first.rstrip().endswith("hello there")
    assert " error" in second.splitlines()[0]
    assert "error: ValueError: scripted failure" in second

    code, out, _ = await cli(capsys, "logs", "scripted:echo", "--url", served.url, "--json", "-n", "1")
    (record,) = json.loads(out)
    assert record["status"] == "error" and record["input"] == "user: please FAIL now"
    code, out, _ = await cli(capsys, "logs", "x", "--id", record["correlation_id"], "--url", served.url, "--json")
    assert json.loads(out)[0]["correlation_id"] == record["correlation_id"]

    code, out, _ = await cli(capsys, "stop", "echo:latest", "--url", served.url)
    assert (code, out.strip()) == (0, "scripted:echo: stopped")
    refused = await chat(served, "echo", "anyone?")
    assert refused.status_code >= 400  # (the Ollama API answers a stopped actor with 500 for now)
    other = await chat(served, "other", "still here")
    assert other.json()["message"]["content"] == "still here"

    code, out, _ = await cli(capsys, "restart", "echo", "--url", served.url)
    assert code == 0 and "(restarts: 1)" in out
    assert (await chat(served, "echo", "back again")).json()["message"]["content"] == "back again"

    async with httpx.AsyncClient(base_url=served.url) as client:
        metrics = (await client.get("/metrics")).text
    assert 'workbench_actor_requests_total{actor="scripted:echo",runtime="scripted"} 3' in metrics
    assert 'workbench_actor_errors_total{actor="scripted:echo",runtime="scripted"} 1' in metrics
    assert 'workbench_actor_restarts_total{actor="scripted:echo",runtime="scripted"} 1' in metrics
    assert "# TYPE workbench_actor_queue_depth gauge" in metrics


async def test_clear_errors_for_an_unknown_actor_and_no_server(served: APIServer, capsys) -> None:
    code, _, err = await cli(capsys, "logs", "nobody", "--url", served.url)
    assert code == 2
    assert "no actor 'nobody' here (actors: scripted:echo, scripted:other)" in err
    code, _, err = await cli(capsys, "stop", "--url", served.url, "nobody")
    assert code == 2 and "no actor 'nobody'" in err
    await served.close()
    code, _, err = await cli(capsys, "ps", "--url", served.url)
    assert code == 2 and f"no workbench serve answers at {served.url}" in err


def test_stream_log_keeps_the_last_messages_and_bounds_their_text() -> None:
    log = StreamLog(per_actor=2, max_chars=5)
    for number in range(3):
        cid = f"m{number}"
        log.on_event(ActorEvent("queued", "a", cid, "chat", None))
        log.on_event(ActorEvent("started", "a", cid, "chat", 0.25))
        log.on_event(ActorEvent("chunk", "a", cid, "chat", Chunk(text="abc")))
        log.on_event(ActorEvent("chunk", "a", cid, "chat", Chunk(text="def")))
    log.on_event(ActorEvent("done", "a", "m2", "chat", None))
    kept = log.messages("a")
    assert [record.correlation_id for record in kept] == ["m1", "m2"]
    assert kept[1].text == "abcde" and kept[1].truncated and kept[1].chunks == 2
    assert kept[1].status == "done" and kept[0].status == "running" and kept[0].queued_s == 0.25
    log.on_event(ActorEvent("chunk", "a", "m0", "chat", Chunk(text="late")))  # forgotten: ignored
    assert log.find("m0") is None
    assert {record.kind for record in kept} == {"query"}
    log.on_event(ActorEvent("queued", "a", "r1", "read", None))
    assert log.find("r1").kind == "read"  # seed 002's vocabulary, as the control API shows it


async def test_a_journal_keeps_the_streams_across_a_restart_of_serve(tmp_path, capsys) -> None:
    journal = tmp_path / "streams.jsonl"
    for run in (1, 2):
        actor = ScriptedActor("echo")
        server = APIServer([actor], port=0, journal=journal)
        await server.start()
        try:
            answer = await chat(server, "echo", f"run {run} says hello with key sk-abcdefghij0123456789xyz")
            assert answer.status_code == 200
            code, out, _ = await cli(capsys, "logs", "echo", "--url", server.url, "--json")
        finally:
            await server.close()
            await actor.stop()
        records = json.loads(out)
        assert [record["input"].split(" says")[0] for record in records] == [f"user: run {n}" for n in range(1, run + 1)]
    lines = journal.read_text().splitlines()
    assert json.loads(lines[0]) == {"format": "workbench.stream-journal", "version": 1}
    assert len(lines) == 3 and "sk-abcdefghij0123456789xyz" not in journal.read_text()  # redacted


def test_a_stream_journal_rotates_skips_a_cut_line_and_refuses_other_files(tmp_path) -> None:
    from workbench.errors import SessionFileError
    from workbench.metrics.streamlog import MessageRecord
    from workbench.server.stream_journal import StreamJournal, load_stream_journal, rotated

    path = tmp_path / "streams.jsonl"
    journal = StreamJournal(path, rotate_bytes=600)
    for number in range(6):
        journal.append(MessageRecord(actor="a", correlation_id=f"m{number}", operation="chat", status="done",
                                     sent_at=1.0, text="x" * 100))
    journal.close()
    assert rotated(path).exists()
    with path.open("a") as stream:
        stream.write('{"actor": "a", "correlation_id": "cut')  # a crash mid-line
    records, skipped = load_stream_journal(path, rotate_bytes=600)
    # ~300 bytes a record: the file rotated twice, so m0 and m1 went with the first rotated file
    assert [r.correlation_id for r in records] == ["m2", "m3", "m4", "m5"] and skipped == 1
    path.write_text('{"format": "workbench.session", "version": 3}\n')
    with pytest.raises(SessionFileError, match="not a workbench stream journal"):
        load_stream_journal(path)


async def test_logs_follow_prints_each_message_as_it_ends(served: APIServer) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workbench.cli", "logs", "echo", "--url", served.url, "--follow",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert (await asyncio.wait_for(process.stdout.readline(), 60)).decode().strip() == "scripted:echo: no messages yet"
        await chat(served, "echo", "followed words")
        lines: list[str] = []
        while "followed words" not in lines:  # the streamed text's own line
            lines.append((await asyncio.wait_for(process.stdout.readline(), 30)).decode().rstrip("\n"))
        head = next(line for line in lines if line.startswith("["))
        assert " chat " in head and " done · queued " in head and "> user: followed words" in lines
    finally:
        process.terminate()
        await process.wait()
