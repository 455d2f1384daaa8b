"""What the graphs panel plots: memory per pane and latency per request, against seconds elapsed.

Kept apart from the widget so live sessions (fed by the resource sampler and finished replies) and
played-back sessions (fed by recorded samples and metrics) draw through the same panel.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from workbench.metrics.request import RequestMetrics

MAX_POINTS = 600


@dataclass(frozen=True, slots=True)
class LatencyPoint:
    t: float
    ttft_s: float | None
    tokens_per_s: float | None


@dataclass
class GraphData:
    """Series keyed by pane label. `version` changes whenever data is added, so redraws can be skipped."""

    memory: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)  # (t, MiB)
    latency: dict[str, deque[LatencyPoint]] = field(default_factory=dict)
    version: int = 0

    def add_memory(self, label: str, t: float, rss_bytes: int) -> None:
        self.memory.setdefault(label, deque(maxlen=MAX_POINTS)).append((t, rss_bytes / 2**20))
        self.version += 1

    def add_request(self, label: str, t: float, metrics: RequestMetrics) -> None:
        point = LatencyPoint(t, metrics.ttft_s, metrics.output_tokens_per_s)
        self.latency.setdefault(label, deque(maxlen=MAX_POINTS)).append(point)
        self.version += 1

    def clear(self) -> None:
        self.memory.clear()
        self.latency.clear()
        self.version += 1
