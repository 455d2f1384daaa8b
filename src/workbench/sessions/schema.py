"""Versioned file formats: a chat session (panes and every event, timed) and a benchmark run.

Both are plain JSON validated by pydantic on load; nothing in a file is ever executed. Bump
`SCHEMA_VERSION` when a change would make old readers misread a new file.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workbench import __version__
from workbench.metrics.request import RequestMetrics
from workbench.runtimes.types import ChatMessage, GenerationOptions

SCHEMA_VERSION = 1
SESSION_FORMAT = "workbench.session"
JOURNAL_FORMAT = "workbench.session-journal"
BENCHMARK_FORMAT = "workbench.benchmark"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----- chat sessions -----------------------------------------------------------------------------------
class PaneRecord(Strict):
    """One chat pane: the actor it talks to and the options it sends."""

    id: str
    spec: str
    title: str = ""
    options: GenerationOptions = Field(default_factory=GenerationOptions)


class _Event(Strict):
    t: float = Field(ge=0.0, description="seconds since the session started")
    pane: str
    correlation_id: str | None = None


class PromptEvent(_Event):
    """A prompt sent to a pane: the new user turn and the operation it went through."""

    kind: Literal["prompt"] = "prompt"
    operation: str = "chat"
    message: ChatMessage
    options: GenerationOptions = Field(default_factory=GenerationOptions)


class ChunkEvent(_Event):
    kind: Literal["chunk"] = "chunk"
    text: str = ""
    thinking: str = ""


class DoneEvent(_Event):
    kind: Literal["done"] = "done"
    metrics: RequestMetrics | None = None
    finish_reason: str | None = None


class ErrorEvent(_Event):
    kind: Literal["error"] = "error"
    error: str
    error_type: str = ""


class CancelledEvent(_Event):
    kind: Literal["cancelled"] = "cancelled"


class SampleEvent(_Event):
    """A resource sample of the process holding the pane's model, so playback can redraw the graphs."""

    kind: Literal["sample"] = "sample"
    rss_bytes: int = Field(ge=0)
    cpu_percent: float = Field(ge=0.0)


class PaneEvent(_Event):
    """A pane opened (or was re-bound) after the session began."""

    kind: Literal["pane"] = "pane"
    record: PaneRecord


SessionEvent = Annotated[
    PromptEvent | ChunkEvent | DoneEvent | ErrorEvent | CancelledEvent | SampleEvent | PaneEvent,
    Field(discriminator="kind"),
]


class SessionHeader(Strict):
    """What a journal's first line holds, and the head of a saved session."""

    format: Literal["workbench.session", "workbench.session-journal"] = SESSION_FORMAT
    version: int = SCHEMA_VERSION
    id: str
    name: str = ""
    created_at: datetime = Field(default_factory=utc_now)
    workbench_version: str = __version__
    panes: list[PaneRecord] = Field(default_factory=list)


class ChatSession(SessionHeader):
    events: list[SessionEvent] = Field(default_factory=list)

    @property
    def turns(self) -> int:
        return sum(1 for event in self.events if isinstance(event, PromptEvent))

    @property
    def duration_s(self) -> float:
        return self.events[-1].t if self.events else 0.0

    def all_panes(self) -> list[PaneRecord]:
        """Panes from the header plus any opened later, in order."""
        panes = {pane.id: pane for pane in self.panes}
        for event in self.events:
            if isinstance(event, PaneEvent):
                panes[event.record.id] = event.record
        return list(panes.values())


# ----- benchmark runs ------------------------------------------------------------------------------------
class MachineInfo(Strict):
    cpu: str = ""
    cores_logical: int = 0
    cores_physical: int | None = None
    memory_bytes: int = 0
    os: str = ""
    python: str = ""


class BenchmarkPrompt(Strict):
    """One benchmark request's input: chat messages (chat/generate) and/or texts to embed (embed).

    A run keeps the prompts it used, so a replay sends exactly the same requests even when the
    prompt file has changed or gone.
    """

    messages: list[ChatMessage] = Field(default_factory=list)
    inputs: list[str] = Field(default_factory=list)


class BenchmarkConfig(Strict):
    actors: list[str]
    op: Literal["chat", "generate", "embed"] = "chat"
    prompts: str = "short"
    concurrency: list[int] = Field(default_factory=lambda: [1])
    max_tokens: int | None = None
    warmup: int = 0
    repeat: int = 1
    threads: int | None = None
    options: GenerationOptions = Field(default_factory=GenerationOptions)


class RequestRecord(Strict):
    actor: str
    concurrency: int
    prompt_index: int
    repeat: int = 0
    ok: bool
    error: str | None = None
    metrics: RequestMetrics | None = None


class ResourceRecord(Strict):
    actor: str
    t: float
    rss_bytes: int
    cpu_percent: float


class Percentiles(Strict):
    p50: float
    p90: float
    p99: float
    mean: float
    count: int


class LevelSummary(Strict):
    """One actor at one concurrency level."""

    actor: str
    concurrency: int
    requests: int
    errors: int
    duration_s: float
    request_throughput: float
    output_tokens_per_s: float
    metrics: dict[str, Percentiles] = Field(default_factory=dict)
    peak_rss_bytes: int | None = None
    mean_rss_bytes: float | None = None
    mean_cpu_percent: float | None = None


class BenchmarkRun(Strict):
    format: Literal["workbench.benchmark"] = BENCHMARK_FORMAT
    version: int = SCHEMA_VERSION
    id: str
    created_at: datetime = Field(default_factory=utc_now)
    machine: MachineInfo = Field(default_factory=MachineInfo)
    versions: dict[str, str] = Field(default_factory=dict)
    config: BenchmarkConfig
    records: list[RequestRecord] = Field(default_factory=list)
    samples: list[ResourceRecord] = Field(default_factory=list)
    summaries: list[LevelSummary] = Field(default_factory=list)
    prompt_set: list[BenchmarkPrompt] = Field(default_factory=list)
    notes: dict[str, Any] = Field(default_factory=dict)
