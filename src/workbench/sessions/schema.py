"""Versioned file formats: a chat session (panes and every event, timed) and a benchmark run.

Both are plain JSON validated by pydantic on load; nothing in a file is ever executed. Bump
`SCHEMA_VERSION` (sessions) or `BENCHMARK_VERSION` (benchmark runs) when a change would make old
readers misread a new file, and add a step to `migrate_session` / `migrate_benchmark` so older files
still load.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workbench import __version__
from workbench.metrics.request import RequestMetrics
from workbench.runtimes.types import ChatMessage, GenerationOptions

SCHEMA_VERSION = 3
"""Sessions: 1 = prompts were all queries; 2 adds prompt events with operation `read` (context an
actor read without answering; a version-1 reader would have re-run the turns after it without it);
3 adds `placed` events (where a pane's model ran: placement, pid, node, each time its actor became
ready). Nothing else changed, so version-1 and -2 files migrate as they are."""
SESSION_VERSIONS = (1, 2, 3)
BENCHMARK_VERSION = 3
"""Benchmark runs: 1 = speed only; 2 adds prompts' expectations, answers and scores, accuracy per
summary, and agreement between actors (all optional, so a version-1 file migrates as it is);
3 adds where in-process models ran (`config.placement`) and each actor's own memory
(`actor_memory`: RSS/USS of its process, its baseline, model = after load − baseline), both
optional, so version-1 and -2 files migrate as they are."""
BENCHMARK_VERSIONS = (1, 2, 3)
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
    """A prompt sent to a pane: the new user turn and the operation it went through. Operation `read`
    (version 2): the message was given as context, without asking for a reply; it is answered by a
    `done` event without text. Operation `forget` (empty message): the context read so far was dropped."""

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


class PlacedEvent(_Event):
    """Where the pane's model runs outside the app (process, ray), recorded when its actor is ready
    (again after a restart; version 3). No such event: the model ran in the app or on a server."""

    kind: Literal["placed"] = "placed"
    placement: str = Field(description="thread/process/ray")
    pid: int | None = None
    node: str | None = Field(default=None, description="the host name of the machine holding the model")
    details: dict[str, Any] = Field(default_factory=dict, description="e.g. a Ray actor's node IP and cluster address")


SessionEvent = Annotated[
    PromptEvent | ChunkEvent | DoneEvent | ErrorEvent | CancelledEvent | SampleEvent | PaneEvent | PlacedEvent,
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


MatchRule = Literal["exact", "contains", "regex", "choice", "number", "json"]


class Expectation(Strict):
    """What a right answer looks like (scored by `workbench.bench.scoring`).

    - `exact`: the answer equals `value` (case-insensitive unless `case_sensitive`; surrounding
      whitespace, quotes and a final full stop are ignored);
    - `contains`: `value` occurs in the answer; `regex`: `value` (a Python regex) matches somewhere;
    - `choice`: the first of `options` the answer names (as a whole word, case-insensitive) is
      `value`; without `value`, naming any option is right;
    - `number`: the answer's number (`pick`: the last one, as lm-eval-harness's flexible extract,
      or the first, or any) is within `tolerance` of `value`;
    - `json`: the answer (or the first JSON object/array in it, code fences allowed) parses, has the
      `keys` (an object), and equals `value` on each key `value` gives (or equals `value` outright
      when `value` is not an object).
    """

    match: MatchRule
    value: Any = None
    options: list[str] = Field(default_factory=list)
    tolerance: float = Field(default=0.0, ge=0.0)
    pick: Literal["last", "first", "any"] = "last"
    keys: list[str] = Field(default_factory=list)
    case_sensitive: bool = False

    @model_validator(mode="after")
    def _check_rule(self) -> Expectation:
        rule = self.match
        if rule in ("exact", "contains", "regex") and (not isinstance(self.value, str) or not self.value):
            raise ValueError(f"'{rule}' needs 'value': a non-empty string")
        if rule == "regex":
            try:
                re.compile(self.value)
            except re.error as error:
                raise ValueError(f"'value' is not a valid regular expression ({error})") from None
        if rule == "choice":
            if not self.options or not all(isinstance(o, str) and o.strip() for o in self.options):
                raise ValueError("'choice' needs 'options': a non-empty list of non-empty strings")
            if self.value is not None and (not isinstance(self.value, str)
                                           or self.value.casefold() not in {o.casefold() for o in self.options}):
                raise ValueError(f"'value' {self.value!r} is not one of 'options' {self.options}")
        if rule == "number" and (isinstance(self.value, bool) or not isinstance(self.value, int | float)):
            raise ValueError("'number' needs 'value': a number")
        if rule != "json" and self.keys:
            raise ValueError("'keys' only applies to match 'json'")
        if rule != "choice" and self.options:
            raise ValueError("'options' only applies to match 'choice'")
        return self


class BenchmarkPrompt(Strict):
    """One benchmark request's input: chat messages (chat/generate) and/or texts to embed (embed),
    and optionally what a right answer looks like.

    A run keeps the prompts it used, so a replay sends exactly the same requests even when the
    prompt file has changed or gone.
    """

    messages: list[ChatMessage] = Field(default_factory=list)
    inputs: list[str] = Field(default_factory=list)
    expected: Expectation | None = None


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
    placement: str | None = Field(default=None, description="thread/process/...: where in-process models ran")


class RequestRecord(Strict):
    actor: str
    concurrency: int
    prompt_index: int
    repeat: int = 0
    ok: bool
    error: str | None = None
    metrics: RequestMetrics | None = None
    answer: str | None = Field(default=None, description="the answer's text (chat/generate)")
    score: float | None = Field(default=None, description="1 right, 0 wrong; None when not scored")
    score_note: str | None = Field(default=None, description="why it scored so, in a few words")


class ResourceRecord(Strict):
    actor: str
    t: float
    rss_bytes: int
    cpu_percent: float


class ActorMemory(Strict):
    """One actor's memory after its last level, read from the process that holds its model (version 3)."""

    actor: str
    placement: str | None = None
    pid: int | None = None
    node: str | None = None
    shared: bool = Field(default=False, description="the process is shared with other actors (thread placement)")
    rss_bytes: int | None = None
    uss_bytes: int | None = None
    baseline_rss_bytes: int | None = Field(default=None, description="the worker before its model loaded")
    baseline_uss_bytes: int | None = None
    model_rss_bytes: int | None = Field(default=None, description="rss − baseline: what the model added")
    model_uss_bytes: int | None = None


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
    scored: int = Field(default=0, description="requests whose prompt had an expectation")
    correct: int = 0
    accuracy: float | None = Field(default=None, description="correct / scored; None when nothing was scored")
    cached_prompt_share: float | None = Field(
        default=None, description="share of prompt tokens the runtime served from its prompt cache, over the "
                                  "requests that report it (torch, llama.cpp); None when none does")


class PromptAgreement(Strict):
    """Two actors' answers to one prompt: equal or not, where they first differ, how alike."""

    prompt_index: int
    identical: bool
    first_divergence: int | None = Field(default=None, description="character index; None when identical")
    similarity: float | None = Field(default=None, description="normalised Levenshtein similarity 0..1 (text)")
    cosine: float | None = Field(default=None, description="mean cosine similarity of the vectors (embed)")


class PairAgreement(Strict):
    """How often actor `a` and actor `b` gave the same answer to the same greedy prompt."""

    a: str
    b: str
    compared: int
    identical: int
    identical_rate: float
    mean_first_divergence: float | None = Field(
        default=None, description="mean character index of the first difference, over the differing answers")
    mean_similarity: float | None = None
    mean_cosine: float | None = None
    min_cosine: float | None = None
    prompts: list[PromptAgreement] = Field(default_factory=list)


class BenchmarkRun(Strict):
    format: Literal["workbench.benchmark"] = BENCHMARK_FORMAT
    version: int = BENCHMARK_VERSION
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
    agreement: list[PairAgreement] = Field(default_factory=list)
    actor_memory: list[ActorMemory] = Field(default_factory=list)


def migrate_session(data: dict[str, Any]) -> dict[str, Any]:
    """A session file's (or journal header's) JSON brought up to `SCHEMA_VERSION` (the caller checked
    it is one of `SESSION_VERSIONS`). Versions 1 -> 2 -> 3 only added a meaning and an event kind, so it
    just moves the number."""
    if data.get("version") in (1, 2):
        data = {**data, "version": SCHEMA_VERSION}
    return data


def migrate_benchmark(data: dict[str, Any]) -> dict[str, Any]:
    """A benchmark file's JSON brought up to `BENCHMARK_VERSION` (the caller checked it is one of
    `BENCHMARK_VERSIONS`). Versions 1 -> 2 -> 3 only added optional fields, so it just moves the number."""
    version = data.get("version")
    if version in (1, 2):
        data = {**data, "version": BENCHMARK_VERSION}
    return data
