"""Benchmarks against real runtimes: the embedded SmolLM2 in process (transformers), and Ollama's HTTP
API over loopback (`workbench serve`'s server, with a real actor behind it), tiny workloads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.scripted import ScriptedActor
from workbench.actors.limit import ConcurrencyLimit
from workbench.bench.prompts import builtin_sets
from workbench.bench.runner import BenchmarkRunner
from workbench.runtimes.base import ModelRuntimeActor
from workbench.runtimes.registry import create_actor
from workbench.sessions.schema import BenchmarkConfig
from workbench.sessions.store import load_benchmark, save_benchmark

TWO_PROMPTS = builtin_sets()["short"][:2]
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def shared_smollm2(request: pytest.FixtureRequest) -> ModelRuntimeActor | None:
    """The session's shared SmolLM2 actor, when tests/conftest.py provides one (looked up from a sync
    fixture: an async fixture cannot set up another one while the loop runs)."""
    try:
        return request.getfixturevalue("smollm2_transformers")
    except pytest.FixtureLookupError:
        return None


@pytest.fixture(scope="module")
async def smollm2(shared_smollm2: ModelRuntimeActor | None) -> AsyncIterator[ModelRuntimeActor]:
    """The shared actor, else one started for this module."""
    if shared_smollm2 is not None:
        yield shared_smollm2
        return
    try:
        actor = create_actor("transformers:smollm2")
    except Exception as error:  # the runtime has not landed, or its dependencies are missing
        pytest.skip(f"transformers runtime unavailable: {error}")
    actor.start()
    await actor.wait_ready()
    yield actor
    await actor.stop()


@pytest.fixture(scope="module")
def served_actor(request: pytest.FixtureRequest) -> ModelRuntimeActor | None:
    """SmolLM2 to serve, or None when it cannot load here (the scripted actor stands in)."""
    try:
        return request.getfixturevalue("smollm2")
    except pytest.skip.Exception:
        return None


@pytest.fixture(scope="module")
async def served(served_actor: ModelRuntimeActor | None) -> AsyncIterator[tuple[str, str]]:
    """An Ollama-API server on 127.0.0.1 serving SmolLM2 (or, until it can load here, the scripted
    actor, with its own limit as a separate server would have): (base URL, served model name)."""
    from workbench.server.http import HTTPServer
    from workbench.server.ollama_api import OllamaAPI, served_name

    own = ScriptedActor("smollm2", delay_s=0.005, limit=ConcurrencyLimit(2)) if served_actor is None else None
    actor = served_actor or own
    assert actor is not None
    server = HTTPServer(OllamaAPI([actor]))
    await server.start()
    yield server.url, served_name(actor)
    await server.close()
    if own is not None:
        await own.stop()


async def test_smollm2_in_process(smollm2: ModelRuntimeActor, tmp_path: Path) -> None:
    config = BenchmarkConfig(actors=[], prompts="short", concurrency=[1, 2], max_tokens=4)
    run = await BenchmarkRunner(config, prompts=TWO_PROMPTS, actors=[smollm2]).run()
    assert len(run.records) == 4 and all(record.ok for record in run.records), run.records
    for record in run.records:
        metrics = record.metrics
        assert metrics is not None and metrics.ttft_s is not None
        assert 0 < metrics.ttft_s <= metrics.e2e_s
        assert metrics.output_tokens is not None and 1 <= metrics.output_tokens <= 4
    for summary in run.summaries:
        assert summary.output_tokens_per_s > 0 and summary.metrics["ttft_s"].count == 2
        assert summary.peak_rss_bytes is not None and summary.peak_rss_bytes > 150 * MIB  # the model is in here
    loaded = load_benchmark(save_benchmark(run, tmp_path / "smollm2.json"))
    assert loaded.records == run.records and loaded.summaries == run.summaries


async def test_ollama_api_over_loopback_with_a_missing_model(served: tuple[str, str]) -> None:
    url, model = served
    good, missing = f"ollama:{model}@{url}", f"ollama:no-such-model@{url}"
    config = BenchmarkConfig(actors=[missing, good], concurrency=[2], max_tokens=4)
    run = await BenchmarkRunner(config, prompts=TWO_PROMPTS).run()
    by_actor = {(s.actor, s.concurrency): s for s in run.summaries}
    assert (by_actor[(missing, 2)].requests, by_actor[(missing, 2)].errors) == (2, 2)
    assert (by_actor[(good, 2)].requests, by_actor[(good, 2)].errors) == (2, 0)
    assert by_actor[(good, 2)].output_tokens_per_s > 0 and by_actor[(good, 2)].metrics["ttft_s"].count == 2
    errors = [r.error or "" for r in run.records if not r.ok]
    assert errors and all("no-such-model" in error for error in errors)
    from workbench import __version__

    assert run.versions[f"server:{good}"] == __version__  # asked the server through the actor
