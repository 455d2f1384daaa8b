"""`workbench bench` as a user runs it: a real subprocess, real files, a real SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.bench.prompts import parse_prompt_lines
from workbench.cli import build_parser
from workbench.commands.bench import config_from_args
from workbench.errors import BenchmarkError, SpecError
from workbench.sessions.schema import BenchmarkConfig, BenchmarkRun
from workbench.sessions.store import load_benchmark, save_benchmark

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 60


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.bench.scripted_cli", *args]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "WORKBENCH_SESSIONS": str(tmp_path / "sessions"), "PYTHONUNBUFFERED": "1"}


def test_arguments_become_the_config() -> None:
    args = build_parser().parse_args(
        ["bench", "--actor", "torch:smollm2", "--actor", "ollama:smollm2@127.0.0.1:9", "--concurrency", "1,2,4",
         "--max-tokens", "8", "--warmup", "2", "--repeat", "3", "--threads", "2", "--prompts", "long"]
    )
    config = config_from_args(args)
    assert config.actors == ["torch:smollm2", "ollama:smollm2@127.0.0.1:9"]
    assert (config.concurrency, config.max_tokens, config.warmup, config.repeat, config.threads) == ([1, 2, 4], 8, 2, 3, 2)
    assert (config.prompts, config.op, config.options.temperature) == ("long", "chat", 0.0)
    embed = config_from_args(build_parser().parse_args(["bench", "--actor", "m", "--op", "embed"]))
    assert (embed.prompts, embed.max_tokens) == ("embed", None)


@pytest.mark.parametrize(
    ("argv", "error", "message"),
    [
        (["bench"], BenchmarkError, "at least one actor"),
        (["bench", "--actor", "nosuch:m"], SpecError, "unknown runtime"),
        (["bench", "--actor", "m", "--concurrency", "1,x"], BenchmarkError, "whole numbers"),
        (["bench", "--actor", "m", "--concurrency", "100"], BenchmarkError, "outside"),
    ],
)
def test_bad_arguments_fail_before_anything_loads(argv: list[str], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        config_from_args(build_parser().parse_args(argv))


def test_a_malformed_prompt_file_is_reported_with_its_line(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('"fine"\n{"prompt": \n', encoding="utf-8")
    done = subprocess.run(_command("bench", "--actor", "scripted:echo", "--prompts", str(prompts)),
                          cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 2
    assert f"{prompts} line 2: not valid JSON" in done.stderr
    assert not (tmp_path / "sessions").exists()


def test_replay_reruns_the_exact_config_and_saves_a_new_file(tmp_path: Path) -> None:
    config = BenchmarkConfig(actors=["scripted:echo"], prompts="gone.jsonl", concurrency=[1, 2], max_tokens=5,
                             warmup=0, repeat=2)
    prompts = parse_prompt_lines('"one two three"\n{"prompt": "FAIL here"}\n')
    original = BenchmarkRun(id="bench-original", config=config, prompt_set=prompts)
    path = save_benchmark(original, tmp_path / "original.json")
    done = subprocess.run(_command("bench", "replay", str(path), "--quiet"), cwd=ROOT, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    (saved,) = (tmp_path / "sessions").glob("bench-*.json")
    replay = load_benchmark(saved)
    assert replay.id != original.id
    assert replay.config == original.config and replay.prompt_set == original.prompt_set
    assert len(replay.records) == 2 * 2 * 2
    assert sum(not r.ok for r in replay.records) == 4  # the FAIL prompt, each level, each repeat
    assert f"saved {saved}" in done.stdout
    assert "original.json (original)" in done.stdout and "replay" in done.stdout  # printed side by side


def test_ctrl_c_stops_cleanly_and_saves_what_finished(tmp_path: Path) -> None:
    output = tmp_path / "interrupted.json"
    process = subprocess.Popen(
        _command("bench", "--actor", "scripted:slow", "--concurrency", "2", "--repeat", "200", "--warmup", "0",
                 "--prompts", _prompt_file(tmp_path), "-o", str(output)),
        cwd=ROOT, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        seen = b""
        deadline = time.monotonic() + TIMEOUT_S
        while b" 3/200 " not in seen and b" 4/200 " not in seen:  # a few requests have finished
            assert time.monotonic() < deadline, seen[-300:]
            chunk = os.read(process.stderr.fileno(), 4096)
            assert chunk, f"exited early: {seen[-500:]!r}"
            seen += chunk
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr.decode()
    assert b"interrupted; saved the requests that finished" in stderr
    run = load_benchmark(output)
    assert run.notes["interrupted"] is True
    assert 3 <= len(run.records) < 200
    assert all(record.ok for record in run.records)
    assert run.summaries and run.summaries[0].requests == len(run.records)
    assert f"saved {output}".encode() in stdout


def _prompt_file(tmp_path: Path) -> str:
    path = tmp_path / "slow.jsonl"
    path.write_text('"a b c d"\n', encoding="utf-8")
    return str(path)
