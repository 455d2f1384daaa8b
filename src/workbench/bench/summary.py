"""From per-request records and resource samples to one summary per actor and concurrency level.

Latency metrics are summarised over successful requests only (p50/p90/p99 with linear
interpolation, and the mean); ITL pools every gap of every request, as vLLM reports it.
Throughput is over the level's wall time: successful requests (or their output tokens) divided
by the time from the first request sent to the last one finished. Accuracy is over the answered
requests whose prompt had an expectation (failed requests show in `errors`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from workbench.metrics.request import RequestMetrics, percentile
from workbench.sessions.schema import LevelSummary, Percentiles, RequestRecord, ResourceRecord

MetricGetter = Callable[[RequestMetrics], list[float]]


def _one(value: float | None) -> list[float]:
    return [] if value is None else [float(value)]


# name -> values a request contributes (most give one; ITL gives one per gap)
METRICS: dict[str, MetricGetter] = {
    "ttft_s": lambda m: _one(m.ttft_s),
    "itl_s": lambda m: list(m.itl_s),
    "tpot_s": lambda m: _one(m.tpot_s),
    "e2e_s": lambda m: [m.e2e_s],
    "output_tokens_per_s": lambda m: _one(m.output_tokens_per_s),
}


def percentiles(values: Sequence[float]) -> Percentiles | None:
    if not values:
        return None
    return Percentiles(
        p50=percentile(values, 50),
        p90=percentile(values, 90),
        p99=percentile(values, 99),
        mean=sum(values) / len(values),
        count=len(values),
    )


def summarize_level(
    actor: str,
    concurrency: int,
    records: Sequence[RequestRecord],
    samples: Sequence[ResourceRecord],
    duration_s: float,
) -> LevelSummary:
    """Summarise one actor at one level; `records` and `samples` may include others (filtered here)."""
    mine = [r for r in records if r.actor == actor and r.concurrency == concurrency]
    ok = [r.metrics for r in mine if r.ok and r.metrics is not None]
    metrics: dict[str, Percentiles] = {}
    for name, getter in METRICS.items():
        found = percentiles([value for m in ok for value in getter(m)])
        if found is not None:
            metrics[name] = found
    output_tokens = sum(m.output_tokens or 0 for m in ok)
    scored = [r.score for r in mine if r.score is not None]
    correct = sum(1 for score in scored if score >= 1.0)
    reporting = [m for m in ok if m.cached_prompt_tokens is not None and m.input_tokens]
    prompt_tokens = sum(m.input_tokens or 0 for m in reporting)
    rss = [s.rss_bytes for s in samples if s.actor == actor]
    cpu = [s.cpu_percent for s in samples if s.actor == actor]
    return LevelSummary(
        actor=actor,
        concurrency=concurrency,
        requests=len(mine),
        errors=sum(1 for r in mine if not r.ok),
        duration_s=duration_s,
        request_throughput=len(ok) / duration_s if duration_s > 0 else 0.0,
        output_tokens_per_s=output_tokens / duration_s if duration_s > 0 else 0.0,
        metrics=metrics,
        peak_rss_bytes=max(rss) if rss else None,
        mean_rss_bytes=sum(rss) / len(rss) if rss else None,
        mean_cpu_percent=sum(cpu) / len(cpu) if cpu else None,
        scored=len(scored),
        correct=correct,
        accuracy=correct / len(scored) if scored else None,
        cached_prompt_share=sum(m.cached_prompt_tokens or 0.0 for m in reporting) / prompt_tokens if prompt_tokens else None,
    )
