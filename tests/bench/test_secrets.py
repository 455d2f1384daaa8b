"""Benchmark files keep no credentials, in keys as in values, and actors that differ only by their
credentials stay two actors (issue 11)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench.test_runner import PROMPTS
from workbench.bench.runner import BenchmarkRunner
from workbench.redact import REDACTED, redact, redacted_labels
from workbench.sessions.schema import BenchmarkConfig
from workbench.sessions.store import load_benchmark, save_benchmark

SPECS = ["nosuchruntime:m@http://alice:hunter2-secret@10.0.0.9:8080",
         "nosuchruntime:m@http://bob:swordfish-secret@10.0.0.9:8080"]


def test_keys_are_redacted_and_never_merged() -> None:
    cleaned = redact({SPECS[0]: "a", SPECS[1]: "b", "api_key": "sk-abc", "plain": {"x@y": 1}})
    assert list(cleaned) == ["nosuchruntime:m@http://10.0.0.9:8080", "nosuchruntime:m@http://10.0.0.9:8080#2",
                             "api_key", "plain"]
    assert cleaned["api_key"] == REDACTED and cleaned["plain"] == {"x@y": 1}
    assert redacted_labels([*SPECS, SPECS[0]]) == ["nosuchruntime:m@http://10.0.0.9:8080",
                                                   "nosuchruntime:m@http://10.0.0.9:8080#2",
                                                   "nosuchruntime:m@http://10.0.0.9:8080#3"]


async def test_a_benchmark_file_keeps_no_credentials_and_two_actors_stay_two(tmp_path: Path) -> None:
    config = BenchmarkConfig(actors=SPECS, concurrency=[1])
    run = await BenchmarkRunner(config, prompts=PROMPTS[:1]).run()
    path = save_benchmark(run, tmp_path / "run.json")
    text = path.read_text()
    assert "secret" not in text and "alice" not in text and "bob" not in text
    saved = json.loads(text)
    assert len(saved["notes"]["actor_errors"]) == 2
    loaded = load_benchmark(path)
    assert len({summary.actor for summary in loaded.summaries}) == 2
    assert len({record.actor for record in loaded.records}) == 2
