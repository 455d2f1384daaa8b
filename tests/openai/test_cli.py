"""`workbench run` and `workbench bench` with an `openai:` actor, against the loopback replay server:
the answer and our metrics line, and a run file that carries llama.cpp's own figures and its build."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.openai.support import TIMINGS, ReplayServer
from workbench.cli import main


async def test_run_prints_the_answer_and_metrics(replay: ReplayServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert await asyncio.to_thread(main, ["run", f"openai:llamacpp@{replay.url}", "hi"]) == 0
    out = capsys.readouterr().out
    assert "Hello there" in out and "tokens in 12 / out 3" in out


async def test_bench_run_file_carries_the_servers_figures(replay: ReplayServer, tmp_path: Path) -> None:
    spec = f"openai:llamacpp@{replay.url}"
    out = tmp_path / "run.json"
    code = await asyncio.to_thread(main, ["bench", "--actor", spec, "--max-tokens", "4", "--quiet", "-o", str(out)])
    assert code == 0
    run = json.loads(out.read_text())
    assert run["records"] and all(record["ok"] for record in run["records"])
    server = run["records"][0]["metrics"]["server"]
    assert server["llamacpp_prompt_ms"] == TIMINGS["prompt_ms"] and server["llamacpp_predicted_n"] == 3
    assert run["records"][0]["metrics"]["output_tokens"] == 3  # the server's usage, not our count
    assert run["versions"][f"server:{spec}"] == "llama.cpp b6497-cd08fc3e"
    assert replay.requests[-1]["max_tokens"] == 4


async def test_bench_records_an_actor_made_as_dash_under_the_model_it_resolved(replay: ReplayServer,
                                                                             tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    asked = f"openai:-@{replay.url}"
    code = await asyncio.to_thread(main, ["bench", "--actor", asked, "--max-tokens", "4", "--quiet", "-o", str(out)])
    assert code == 0
    run = json.loads(out.read_text())
    resolved = f"openai:llamacpp@{replay.url}"
    assert {record["actor"] for record in run["records"]} == {resolved}
    assert {summary["actor"] for summary in run["summaries"]} == {resolved}
    assert run["versions"][f"server:{resolved}"] == "llama.cpp b6497-cd08fc3e"
    assert run["config"]["actors"] == [asked]  # the config as asked: running it again resolves afresh


async def test_ps_shows_and_stop_takes_the_resolved_label_of_an_actor_made_as_dash(
        replay: ReplayServer, capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.runtimes.registry import create_actor
    from workbench.server.app import APIServer

    actor = create_actor(f"openai:-@{replay.url}")
    actor.start()
    await actor.wait_ready()
    try:
        async with APIServer([actor], port=0) as server:
            assert await asyncio.to_thread(main, ["ps", "--url", server.url]) == 0
            listed = capsys.readouterr().out.splitlines()
            assert listed[1].split()[0] == "openai:llamacpp"
            assert await asyncio.to_thread(main, ["stop", "openai:llamacpp", "--url", server.url]) == 0
            assert actor.state == "stopped"
    finally:
        await actor.stop()
