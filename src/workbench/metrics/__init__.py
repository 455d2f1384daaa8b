"""Measurement: per-request latency metrics and live process resource sampling."""

from workbench.metrics.request import MetricsRecorder, RequestMetrics, percentile
from workbench.metrics.sampler import ProcessTarget, ResourceSample, ResourceSampler, TimeSeries

__all__ = [
    "MetricsRecorder",
    "ProcessTarget",
    "RequestMetrics",
    "ResourceSample",
    "ResourceSampler",
    "TimeSeries",
    "percentile",
]
