"""The built-in scored set on both embedded runtimes of the same model (transformers and our torch
engine), greedy: accuracy and agreement figures present, consistent and plausible. A few items and
a few tokens each, to stay short on a shared CPU; `benchmarks/accuracy_agreement.py` measures the
whole set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from workbench.bench.compare import summary_table
from workbench.bench.prompts import builtin_sets, prompt_text
from workbench.bench.runner import BenchmarkRunner
from workbench.runtimes.base import ModelRuntimeActor
from workbench.runtimes.registry import create_actor
from workbench.sessions.schema import BenchmarkConfig
from workbench.sessions.store import load_benchmark, save_benchmark

WANTED = ("What is the capital of France?", "What is 2 + 2?", "Is 7 an even number? Answer yes or no.",
          'Reply with only a JSON object {"answer": ...} where the answer is the capital of France.')
PROMPTS = [prompt for prompt in builtin_sets()["scored"] if prompt_text(prompt) in WANTED]


@pytest.fixture(scope="module")
async def torch_smollm2() -> AsyncIterator[ModelRuntimeActor]:
    actor = create_actor("torch:smollm2", threads=1)
    actor.start()
    await actor.wait_ready()
    yield actor
    await actor.stop()


async def test_scored_set_on_both_embedded_runtimes(
    smollm2_transformers: ModelRuntimeActor, torch_smollm2: ModelRuntimeActor, tmp_path: Path
) -> None:
    assert len(PROMPTS) == len(WANTED)
    config = BenchmarkConfig(actors=[], prompts="scored", concurrency=[1], max_tokens=12, warmup=0)
    run = await BenchmarkRunner(config, prompts=PROMPTS, actors=[smollm2_transformers, torch_smollm2]).run()
    assert all(record.ok and record.answer for record in run.records), [r.error for r in run.records]
    for summary in run.summaries:
        mine = [r for r in run.records if r.actor == summary.actor]
        assert summary.scored == len(PROMPTS)
        assert summary.correct == sum(1 for r in mine if r.score == 1.0)
        assert summary.accuracy == summary.correct / summary.scored
        assert summary.accuracy > 0  # "The capital of France is Paris." fits in 12 tokens on both
        assert all(r.score_note for r in mine)
    (pair,) = run.agreement
    assert {pair.a, pair.b} == {smollm2_transformers.spec, torch_smollm2.spec}
    assert pair.compared == len(PROMPTS) and 0 <= pair.identical <= pair.compared
    assert pair.identical_rate == pair.identical / pair.compared
    assert pair.mean_similarity is not None and 0.0 <= pair.mean_similarity <= 1.0
    answers = {(r.actor, r.prompt_index): r.answer or "" for r in run.records}
    for found in pair.prompts:
        a, b = answers[(pair.a, found.prompt_index)], answers[(pair.b, found.prompt_index)]
        assert found.identical == (a == b)
        if found.identical:
            assert found.similarity == 1.0 and found.first_divergence is None
        else:
            assert found.first_divergence is not None and found.first_divergence <= min(len(a), len(b))
            assert a[: found.first_divergence] == b[: found.first_divergence]
            assert found.similarity is not None and found.similarity < 1.0
    table = summary_table(run)
    assert "acc %" in table and "agreement" in table
    loaded = load_benchmark(save_benchmark(run, tmp_path / "agree.json"))
    assert loaded.agreement == run.agreement and [r.answer for r in loaded.records] == [r.answer for r in run.records]
    print(table)
