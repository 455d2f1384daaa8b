"""Summaries on known inputs: percentiles, throughput, errors, memory and CPU figures."""

from __future__ import annotations

import pytest

from workbench.bench.summary import percentiles, summarize_level
from workbench.metrics.request import RequestMetrics
from workbench.sessions.schema import RequestRecord, ResourceRecord


def test_percentiles_interpolate_between_ranks() -> None:
    found = percentiles([float(v) for v in range(10, 0, -1)])  # 10..1, unsorted on purpose
    assert found is not None
    assert found.p50 == pytest.approx(5.5)
    assert found.p90 == pytest.approx(9.1)
    assert found.p99 == pytest.approx(9.91)
    assert found.mean == pytest.approx(5.5)
    assert found.count == 10
    assert percentiles([]) is None
    single = percentiles([0.25])
    assert single is not None and (single.p50, single.p99, single.mean) == (0.25, 0.25, 0.25)


def _ok(index: int, ttft: float, e2e: float, tokens: int, itl: list[float]) -> RequestRecord:
    metrics = RequestMetrics(ttft_s=ttft, e2e_s=e2e, output_tokens=tokens, itl_s=itl)
    return RequestRecord(actor="a", concurrency=2, prompt_index=index, ok=True, metrics=metrics)


def test_level_summary_from_known_records() -> None:
    records = [
        _ok(0, 0.1, 1.0, 10, [0.1] * 9),
        _ok(1, 0.3, 2.0, 18, [0.1] * 8 + [0.2]),
        RequestRecord(actor="a", concurrency=2, prompt_index=2, ok=False, error="boom"),
        _ok(0, 9.0, 9.0, 1, []),  # another level: ignored
    ]
    records[3] = records[3].model_copy(update={"concurrency": 1})
    samples = [
        ResourceRecord(actor="a", t=0.0, rss_bytes=100, cpu_percent=50.0),
        ResourceRecord(actor="a", t=0.5, rss_bytes=300, cpu_percent=150.0),
        ResourceRecord(actor="b", t=0.5, rss_bytes=10_000, cpu_percent=1.0),
    ]
    summary = summarize_level("a", 2, records, samples, duration_s=2.0)
    assert (summary.requests, summary.errors) == (3, 1)
    assert summary.request_throughput == pytest.approx(1.0)  # 2 ok in 2 s
    assert summary.output_tokens_per_s == pytest.approx(14.0)  # 28 tokens in 2 s
    assert summary.metrics["ttft_s"].p50 == pytest.approx(0.2)
    assert summary.metrics["e2e_s"].mean == pytest.approx(1.5)
    assert summary.metrics["itl_s"].count == 18  # every gap of every request, pooled
    assert summary.metrics["tpot_s"].p50 == pytest.approx(((0.9 / 9) + (1.7 / 17)) / 2)
    assert summary.metrics["output_tokens_per_s"].mean == pytest.approx((10.0 + 9.0) / 2)
    assert (summary.peak_rss_bytes, summary.mean_rss_bytes, summary.mean_cpu_percent) == (300, 200.0, 100.0)


def test_a_level_with_only_errors_has_no_latency_figures() -> None:
    records = [RequestRecord(actor="x", concurrency=1, prompt_index=0, ok=False, error="down")]
    summary = summarize_level("x", 1, records, [], duration_s=0.0)
    assert (summary.requests, summary.errors, summary.metrics) == (1, 1, {})
    assert summary.request_throughput == 0.0 and summary.peak_rss_bytes is None


def test_the_share_of_prompt_tokens_served_from_a_cache_is_summed_over_requests_that_report_it() -> None:
    def record(index: int, prompt: int, server: dict[str, float]) -> RequestRecord:
        metrics = RequestMetrics(ttft_s=0.1, e2e_s=0.5, output_tokens=4, input_tokens=prompt, server=server)
        return RequestRecord(actor="a", concurrency=1, prompt_index=index, ok=True, metrics=metrics)

    records = [
        record(0, 40, {"torch_cached_prompt_tokens": 24.0}),   # the template's preamble
        record(1, 40, {"torch_cached_prompt_tokens": 39.0}),   # a repeated prompt
        record(2, 20, {"llamacpp_cache_n": 5.0}),               # llama.cpp's own count
        record(3, 100, {}),                                      # says nothing: not counted either way
    ]
    summary = summarize_level("a", 1, records, [], duration_s=1.0)
    assert summary.cached_prompt_share == pytest.approx((24 + 39 + 5) / 100)
    silent = summarize_level("a", 1, records[3:], [], duration_s=1.0)
    assert silent.cached_prompt_share is None
