"""The benchmark runner against real in-process actors (the scripted test runtime: fast, exact)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.scripted import ScriptedActor
from workbench.actors.actor import ActorState
from workbench.actors.limit import ConcurrencyLimit, LimitSnapshot
from workbench.bench.prompts import parse_prompt_lines
from workbench.bench.runner import BenchmarkRunner, BenchProgress
from workbench.errors import BenchmarkError
from workbench.runtimes.base import ModelRuntimeActor
from workbench.runtimes.registry import create_actor
from workbench.sessions.schema import BenchmarkConfig, BenchmarkRun
from workbench.sessions.store import load_benchmark, save_benchmark

PROMPTS = parse_prompt_lines('"alpha beta gamma delta"\n{"prompt": "FAIL after one word"}\n')


async def _stop(*actors: ModelRuntimeActor) -> None:
    for actor in actors:
        await actor.stop(drain=False)


async def test_a_run_saves_a_valid_file_and_a_failing_actor_does_not_stop_the_others(tmp_path: Path) -> None:
    limit = ConcurrencyLimit(1)
    broken = ScriptedActor("missing", limit=limit)  # fails to load
    healthy = ScriptedActor("echo", delay_s=0.005, limit=limit)
    seen: list[BenchProgress] = []
    config = BenchmarkConfig(actors=[], prompts="test.jsonl", concurrency=[1, 2], warmup=1, max_tokens=8)
    runner = BenchmarkRunner(config, prompts=PROMPTS, actors=[broken, healthy], progress=seen.append)
    try:
        run = await runner.run()
    finally:
        await _stop(broken, healthy)

    assert run.config.actors == ["scripted:missing", "scripted:echo"]
    assert len(run.records) == 2 * 2 * 2  # actors x levels x prompts; the warm-up is not recorded
    assert healthy.requests == 1 + 4  # ...though it ran
    by_key = {(s.actor, s.concurrency): s for s in run.summaries}
    for level in (1, 2):
        failed = by_key[("scripted:missing", level)]
        assert (failed.requests, failed.errors) == (2, 2)
        ok = by_key[("scripted:echo", level)]
        assert (ok.requests, ok.errors) == (2, 1)  # the FAIL prompt fails; the other answers
        assert ok.metrics["ttft_s"].count == 1 and ok.output_tokens_per_s > 0
        assert ok.peak_rss_bytes and ok.peak_rss_bytes > 10 * 1024 * 1024  # sampled during the level
    assert "does not exist" in run.notes["actor_errors"]["scripted:missing"]
    failing = [r for r in run.records if r.actor == "scripted:echo" and not r.ok]
    assert failing and all("scripted failure" in (r.error or "") for r in failing)
    assert {s.actor for s in run.samples} == {"scripted:echo"}
    assert run.prompt_set == PROMPTS
    assert run.machine.cores_logical >= 1 and run.machine.memory_bytes > 0 and run.machine.cpu
    assert {"python", "workbench", "torch", "transformers"} <= set(run.versions)
    assert seen[-1].phase == "finished" and seen[-1].done == seen[-1].total == 8

    path = save_benchmark(run, tmp_path / "run.json")
    loaded = load_benchmark(path)
    assert loaded == BenchmarkRun.model_validate(run.model_dump(mode="json"))
    assert loaded.records[0].actor == "scripted:missing"


async def test_the_limit_is_raised_to_each_level_and_restored() -> None:
    limit = ConcurrencyLimit(1)
    limits: list[int] = []

    def listen(snapshot: LimitSnapshot) -> None:
        if not limits or limits[-1] != snapshot.limit:
            limits.append(snapshot.limit)

    limit.on_change(listen)
    actor = ScriptedActor("echo", delay_s=0.01, limit=limit)
    config = BenchmarkConfig(actors=[], concurrency=[1, 3], repeat=2)
    try:
        run = await BenchmarkRunner(config, prompts=PROMPTS[:1], actors=[actor]).run()
    finally:
        await _stop(actor)
    assert limits == [1, 3, 1]
    assert limit.limit == 1
    level3 = [r.metrics for r in run.records if r.concurrency == 3 and r.metrics]
    assert len(level3) == 2
    # One actor runs its mailbox one message at a time: the second request in flight waited.
    assert max(m.queued_s for m in level3) > 0


async def test_specs_are_created_started_and_stopped_and_a_bad_spec_is_all_errors() -> None:
    created: list[ModelRuntimeActor] = []

    def factory(spec: str, **options: Any) -> ModelRuntimeActor:
        if spec.startswith("scripted:"):
            actor = ScriptedActor(spec.split(":", 1)[1], limit=ConcurrencyLimit(1), **options)
            created.append(actor)
            return actor
        return create_actor(spec, **options)

    config = BenchmarkConfig(actors=["nosuchruntime:m", "scripted:echo"], concurrency=[1], threads=1)
    run = await BenchmarkRunner(config, prompts=PROMPTS[:1], actor_factory=factory).run()
    bad = [r for r in run.records if r.actor == "nosuchruntime:m"]
    assert len(bad) == 1 and not bad[0].ok and "unknown runtime 'nosuchruntime'" in (bad[0].error or "")
    assert [r.ok for r in run.records if r.actor == "scripted:echo"] == [True]
    assert created[0].threads == 1
    assert created[0].state == ActorState.STOPPED  # the runner made it, so the runner stopped it


@pytest.mark.parametrize("op", ["generate", "embed"])
async def test_other_operations(op: str) -> None:
    actor = ScriptedActor("echo", limit=ConcurrencyLimit(1))
    config = BenchmarkConfig(actors=[], op=op, concurrency=[1])
    try:
        run = await BenchmarkRunner(config, prompts=PROMPTS[:1], actors=[actor]).run()
    finally:
        await _stop(actor)
    (record,) = run.records
    assert record.ok and record.metrics is not None and record.metrics.operation == op
    assert run.summaries[0].metrics["e2e_s"].count == 1


async def test_a_stop_keeps_what_finished_and_cancels_the_rest() -> None:
    actor = ScriptedActor("echo", delay_s=0.01, limit=ConcurrencyLimit(1))
    config = BenchmarkConfig(actors=[], concurrency=[2, 4], repeat=50)
    runner: BenchmarkRunner

    def progress(state: BenchProgress) -> None:
        if state.done >= 3:
            runner.request_stop()

    runner = BenchmarkRunner(config, prompts=PROMPTS[:1], actors=[actor], progress=progress)
    try:
        run = await runner.run()
        assert (await actor.chat("still here")).text == "still here"  # cancelled, and still serving
    finally:
        await _stop(actor)
    assert run.notes["interrupted"] is True
    assert 3 <= len(run.records) < 10
    assert all(record.ok for record in run.records)
    assert [s.concurrency for s in run.summaries] == [2]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"concurrency": [0]}, "concurrency 0 is outside"),
        ({"concurrency": []}, "at least one concurrency"),
        ({"repeat": 0}, "repeat must be at least 1"),
        ({"actors": []}, "at least one actor"),
    ],
)
def test_bad_configs_are_refused_clearly(change: dict[str, Any], message: str) -> None:
    config = BenchmarkConfig(actors=["scripted:echo"]).model_copy(update=change)
    with pytest.raises(BenchmarkError, match=message):
        BenchmarkRunner(config, prompts=PROMPTS)
