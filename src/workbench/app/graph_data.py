"""What the graphs panel plots: memory per pane and latency per request, against seconds elapsed.

Kept apart from the widget so live sessions (fed by the resource sampler and finished replies) and
played-back sessions (fed by recorded samples and metrics) draw through the same panel.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from workbench.metrics.request import RequestMetrics
from workbench.metrics.sampler import ProcessTarget

MAX_POINTS = 600


def memory_label(title: str, target: ProcessTarget | None) -> str:
    """A pane's memory series label: its title, for its model's own process (a worker, a CLI child);
    a whole server tree (a local Ollama, shared by every model it serves) is labelled so."""
    return f"{title} (server tree)" if target is not None and target.include_children else title


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
