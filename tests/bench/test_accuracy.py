"""Accuracy and agreement through the runner, the saved file, the reports and the command line, with
the scripted test runtime (it answers with the prompt's own words, so the expected figures are known)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.scripted import ScriptedActor
from tests.support.shouting import ShoutingActor
from workbench.actors.limit import ConcurrencyLimit
from workbench.bench.compare import compare_runs, divergence_lines, summary_table
from workbench.bench.prompts import parse_prompt_lines
from workbench.bench.runner import BenchmarkRunner
from workbench.cli import build_parser
from workbench.commands.bench import config_from_args
from workbench.errors import BenchmarkError, SessionFileError
from workbench.sessions.schema import BENCHMARK_VERSION, BenchmarkConfig, BenchmarkRun, LevelSummary
from workbench.sessions.store import load_benchmark, save_benchmark

ROOT = Path(__file__).resolve().parents[2]
PROMPTS_TEXT = (
    '{"prompt": "alpha beta gamma delta", "expected": {"match": "contains", "value": "gamma"}}\n'
    '{"prompt": "the answer is 3", "expected": {"match": "number", "value": 4}}\n'
    '"no expectation here"\n'
)
PROMPTS = parse_prompt_lines(PROMPTS_TEXT)


@pytest.fixture
async def actors() -> Any:
    limit = ConcurrencyLimit(1)
    made = [ScriptedActor("echo", limit=limit), ScriptedActor("echo", limit=limit), ShoutingActor("echo", limit=limit)]
    yield made
    for actor in made:
        await actor.stop(drain=False)


async def test_records_keep_answers_and_scores_and_summaries_have_accuracy(actors: list[ScriptedActor],
                                                                           tmp_path: Path) -> None:
    config = BenchmarkConfig(actors=[], concurrency=[1, 2], max_tokens=8)
    run = await BenchmarkRunner(config, prompts=PROMPTS, actors=actors).run()
    first = [r for r in run.records if r.actor == "scripted:echo" and r.concurrency == 1]
    assert [r.answer for r in first] == ["alpha beta gamma delta", "the answer is 3", "no expectation here"]
    assert [r.score for r in first] == [1.0, 0.0, None]
    assert first[1].score_note and "expected 4" in first[1].score_note
    shouted = [r for r in run.records if r.actor == "shouting:echo" and r.concurrency == 1]
    assert shouted[0].answer == "alpha beta GAMMA delta" and shouted[0].score == 1.0  # contains is case-insensitive
    for summary in run.summaries:
        assert (summary.scored, summary.correct, summary.accuracy) == (2, 1, 0.5)

    pairs = {(p.a, p.b): p for p in run.agreement}
    assert set(pairs) == {("scripted:echo", "scripted:echo#2"), ("scripted:echo", "shouting:echo"),
                          ("scripted:echo#2", "shouting:echo")}
    same = pairs[("scripted:echo", "scripted:echo#2")]
    assert (same.compared, same.identical, same.identical_rate, same.mean_similarity) == (3, 3, 1.0, 1.0)
    assert same.mean_first_divergence is None
    differ = pairs[("scripted:echo", "shouting:echo")]
    assert (differ.compared, differ.identical) == (3, 0)
    assert [p.first_divergence for p in differ.prompts] == [11, 11, 15]  # "alpha beta |GAMMA", "the answer |IS"...
    assert differ.mean_first_divergence == pytest.approx(37 / 3)
    assert 0.5 < differ.mean_similarity < 1.0

    loaded = load_benchmark(save_benchmark(run, tmp_path / "run.json"))
    assert loaded.version == BENCHMARK_VERSION
    assert loaded.records == run.records and loaded.agreement == run.agreement
    assert loaded.prompt_set[0].expected == PROMPTS[0].expected

    table = summary_table(run)
    assert "acc %" in table and "50.0 (1/2)" in table
    assert "agreement" in table and "100% (3/3)" in table and "0% (0/3)" in table
    lines = divergence_lines(run)
    assert "scripted:echo vs scripted:echo#2: every compared answer identical (3)" in lines
    assert any("part at character 11" in line and "'alpha beta gamma delta'" in line for line in lines)


async def test_embedding_agreement_is_cosine(actors: list[ScriptedActor]) -> None:
    prompts = parse_prompt_lines('{"inputs": ["one two", "three"]}\n{"inputs": ["four five six"]}\n')
    config = BenchmarkConfig(actors=[], op="embed", concurrency=[1])
    run = await BenchmarkRunner(config, prompts=prompts, actors=actors[:2]).run()
    (pair,) = run.agreement
    assert (pair.compared, pair.identical, pair.mean_cosine, pair.min_cosine) == (2, 2, pytest.approx(1.0), pytest.approx(1.0))
    assert all(r.answer is None and r.score is None for r in run.records)
    assert all(s.accuracy is None and s.scored == 0 for s in run.summaries)


async def test_an_actor_that_answers_nothing_is_compared_on_nothing(actors: list[ScriptedActor]) -> None:
    broken = ScriptedActor("missing", limit=ConcurrencyLimit(1))
    try:
        run = await BenchmarkRunner(BenchmarkConfig(actors=[]), prompts=PROMPTS, actors=[actors[0], broken]).run()
    finally:
        await broken.stop(drain=False)
    (pair,) = run.agreement
    assert (pair.compared, pair.identical_rate, pair.mean_similarity) == (0, 0.0, None)
    assert divergence_lines(run) == ["scripted:echo vs scripted:missing: no prompt was answered by both"]


async def test_one_actor_has_no_agreement(actors: list[ScriptedActor]) -> None:
    run = await BenchmarkRunner(BenchmarkConfig(actors=[]), prompts=PROMPTS, actors=actors[:1]).run()
    assert run.agreement == [] and "agreement" not in summary_table(run)


def _summary(accuracy: float | None, correct: int, scored: int, tokens_per_s: float = 10.0) -> LevelSummary:
    return LevelSummary(actor="a", concurrency=1, requests=scored, errors=0, duration_s=1.0, request_throughput=1.0,
                        output_tokens_per_s=tokens_per_s, scored=scored, correct=correct, accuracy=accuracy)


def test_compare_shows_accuracy_beside_speed_with_ratios() -> None:
    runs = [BenchmarkRun(id=name, config=BenchmarkConfig(actors=["a"]), summaries=[summary])
            for name, summary in (("one", _summary(0.5, 4, 8, 10.0)), ("two", _summary(0.75, 6, 8, 20.0)))]
    text = compare_runs(runs, ["one", "two"], columns=("output_tokens_per_s", "accuracy"))
    speed, accuracy = text.split("\n\n")
    assert "20.0 (2.00x)" in speed
    assert accuracy.startswith("accuracy") and "50.0 (4/8)" in accuracy and "75.0 (6/8) (1.50x)" in accuracy


def _version_1_file() -> dict[str, Any]:
    """A benchmark file as version 1 wrote it: no expectations, answers, scores, accuracy or agreement."""
    return {
        "format": "workbench.benchmark", "version": 1, "id": "bench-old", "created_at": "2026-01-02T03:04:05Z",
        "machine": {"cpu": "x", "cores_logical": 2, "cores_physical": 2, "memory_bytes": 1, "os": "Linux",
                    "python": "3.11"},
        "versions": {"workbench": "0.1.0"},
        "config": {"actors": ["torch:smollm2"], "op": "chat", "prompts": "short", "concurrency": [1],
                   "max_tokens": 8, "warmup": 0, "repeat": 1, "threads": None, "options": {}},
        "records": [{"actor": "torch:smollm2", "concurrency": 1, "prompt_index": 0, "repeat": 0, "ok": True,
                     "error": None, "metrics": None}],
        "samples": [],
        "summaries": [{"actor": "torch:smollm2", "concurrency": 1, "requests": 1, "errors": 0, "duration_s": 1.0,
                       "request_throughput": 1.0, "output_tokens_per_s": 8.0, "metrics": {}}],
        "prompt_set": [{"messages": [{"role": "user", "content": "What is the capital of France?"}], "inputs": []}],
        "notes": {},
    }


def test_a_version_1_file_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps(_version_1_file()), encoding="utf-8")
    run = load_benchmark(path)
    assert run.version == BENCHMARK_VERSION == 3
    assert run.records[0].answer is None and run.records[0].score is None
    assert run.summaries[0].accuracy is None and run.agreement == [] and run.prompt_set[0].expected is None
    assert "-" in summary_table(run)  # no accuracy shown as "-"
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**_version_1_file(), "version": 4}), encoding="utf-8")
    with pytest.raises(SessionFileError, match="unsupported version 4: this workbench reads version 1 or 2 or 3"):
        load_benchmark(newer)


@pytest.mark.parametrize(("argv", "message"), [
    (["--actor", "m"], "name two or more"),
    (["--actor", "m", "--actor", "n", "--temperature", "0.7"], "greedy"),
    (["--actor", "m", "--actor", "n", "--concurrency", "1,2"], "concurrency 1"),
])
def test_agreement_refuses_settings_that_would_not_compare(argv: list[str], message: str) -> None:
    with pytest.raises(BenchmarkError, match=message):
        config_from_args(build_parser().parse_args(["bench", "--agreement", *argv]))


def test_agreement_defaults_to_the_scored_set() -> None:
    config = config_from_args(build_parser().parse_args(["bench", "--agreement", "--actor", "m", "--actor", "n"]))
    assert (config.prompts, config.concurrency, config.options.temperature) == ("scored", [1], 0.0)


def test_agreement_command_reports_pairs(tmp_path: Path) -> None:
    prompts = tmp_path / "qa.jsonl"
    prompts.write_text(PROMPTS_TEXT, encoding="utf-8")
    output = tmp_path / "agree.json"
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench.scripted_cli", "bench", "--agreement", "--actor", "scripted:echo",
         "--actor", "scripted:echo", "--prompts", str(prompts), "--warmup", "0", "--quiet", "-o", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "WORKBENCH_SESSIONS": str(tmp_path / "sessions")},
    )
    assert result.returncode == 0, result.stderr
    assert "agreement" in result.stdout and "100% (3/3)" in result.stdout
    assert "50.0 (1/2)" in result.stdout  # accuracy beside it
    assert "every compared answer identical (3)" in result.stdout
    run = load_benchmark(output)
    assert run.config.prompts == str(prompts) and len(run.agreement) == 1


async def test_compare_says_whether_a_later_run_changed_the_answers(actors: list[ScriptedActor]) -> None:
    config = BenchmarkConfig(actors=[], concurrency=[1])
    first = await BenchmarkRunner(config, prompts=PROMPTS, actors=actors[:1]).run()
    again = await BenchmarkRunner(config, prompts=PROMPTS, actors=actors[1:2]).run()  # same spec, same answers
    text = compare_runs([first, again], ["first", "again"], columns=("accuracy",))
    assert "answers against the first run" in text
    assert "first: scripted:echo" in text and "again: scripted:echo" in text and "100% (3/3)" in text
    changed = again.model_copy(update={"records": [
        record.model_copy(update={"answer": (record.answer or "") + "!"}) for record in again.records]})
    text = compare_runs([first, changed], ["first", "changed"], columns=("accuracy",))
    assert "0% (0/3)" in text
    other_prompts = again.model_copy(update={"prompt_set": PROMPTS[:1]})
    assert "answers against" not in compare_runs([first, other_prompts], ["first", "other"], columns=("accuracy",))
