"""Streams kept for inspection: every actor's recent messages, their input and the full text of
their streams, bounded.

Seed 004 asks that the system remember the contents of streams for later inspection. `StreamLog`
listens to every actor in the process (`actors.events.add_global_listener`) and keeps, per actor,
the last `per_actor` messages (queued, running or ended) with their input, the text and thinking
they streamed (at most `max_chars` each; `truncated` says when more came), how they ended and their
metrics. `workbench serve` exposes it over HTTP (`workbench ps` / `workbench logs`), and the app's
actors screen (F2) shows it. Memory stays bounded: per_actor × (input + 2 × max_chars) per actor.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from workbench.actors import events
from workbench.actors.events import ActorEvent, add_global_listener
from workbench.actors.kinds import MessageKind, message_kind
from workbench.metrics.request import RequestMetrics

MessageStatus = Literal["queued", "running", "done", "error", "cancelled"]
DEFAULT_PER_ACTOR = 50
DEFAULT_MAX_CHARS = 64 * 1024
INPUT_MAX_CHARS = 4096
_ENDS = (events.DONE, events.ERROR, events.CANCELLED)


class MessageRecord(BaseModel):
    """One message an actor got, as far as it has gone. Times are wall-clock seconds (time.time())."""

    actor: str
    correlation_id: str
    operation: str
    kind: MessageKind = "query"  # seed 002's kind of the operation (query / read / nop)
    status: MessageStatus = "queued"
    sent_at: float
    started_at: float | None = None
    ended_at: float | None = None
    queued_s: float | None = None
    input: str = ""
    text: str = ""
    thinking: str = ""
    truncated: bool = False
    chunks: int = 0
    error: str | None = None
    error_type: str | None = None
    metrics: RequestMetrics | None = None

    @property
    def ended(self) -> bool:
        return self.status in ("done", "error", "cancelled")


def describe_input(payload: Any) -> str:
    """A readable text of a message's input: the conversation's turns, a prompt, texts to embed.
    Duck-typed on the runtime request shapes (this layer sits below `runtimes`)."""
    messages = getattr(payload, "messages", None)
    if messages:
        lines = []
        for message in messages:
            text = message.text if hasattr(message, "text") else str(message)
            images = len(message.image_urls()) if hasattr(message, "image_urls") else 0
            lines.append(f"{getattr(message, 'role', '?')}: {text}" + (f" [{images} image(s)]" if images else ""))
        return _clip("\n".join(lines))
    prompt = getattr(payload, "prompt", None)
    if isinstance(prompt, str):
        return _clip(prompt)
    inputs = getattr(payload, "inputs", None)
    if isinstance(inputs, list):
        return _clip("\n".join(str(item) for item in inputs))
    return "" if payload is None else _clip(str(payload))


def _clip(text: str, limit: int = INPUT_MAX_CHARS) -> str:
    """Keep the end, where the newest turn is."""
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


@dataclass(slots=True)
class _Live:
    """A message while it is kept: plain fields and lists of pieces, cheap to update per chunk (a
    pydantic model per chunk cost several times more); `record()` gives the MessageRecord."""

    actor: str
    correlation_id: str
    operation: str
    sent_at: float
    status: MessageStatus = "queued"
    started_at: float | None = None
    ended_at: float | None = None
    queued_s: float | None = None
    input: str = ""
    text: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    room: list[int] = field(default_factory=lambda: [0, 0])  # characters left for text, thinking
    truncated: bool = False
    chunks: int = 0
    error: str | None = None
    error_type: str | None = None
    metrics: RequestMetrics | None = None

    def keep(self, which: int, piece: str) -> None:
        room = self.room[which]
        if len(piece) > room:
            self.truncated = True
            piece = piece[:room]
        if piece:
            (self.text if which == 0 else self.thinking).append(piece)
            self.room[which] = room - len(piece)

    def record(self) -> MessageRecord:
        return MessageRecord(
            actor=self.actor, correlation_id=self.correlation_id, operation=self.operation,
            kind=message_kind(self.operation), status=self.status,
            sent_at=self.sent_at, started_at=self.started_at, ended_at=self.ended_at, queued_s=self.queued_s,
            input=self.input, text="".join(self.text), thinking="".join(self.thinking), truncated=self.truncated,
            chunks=self.chunks, error=self.error, error_type=self.error_type, metrics=self.metrics,
        )


class StreamLog:
    """The recent messages of every actor in the process. `install()` starts listening; `close()`
    stops. Reading (`actors`, `messages`, `find`) never blocks the actors."""

    def __init__(self, per_actor: int = DEFAULT_PER_ACTOR, max_chars: int = DEFAULT_MAX_CHARS,
                 *, on_end: Callable[[MessageRecord], None] | None = None) -> None:
        """`on_end(record)` is called as each message ends (a journal writes it down)."""
        if per_actor < 1 or max_chars < 1:
            raise ValueError("a stream log keeps at least one message of at least one character")
        self.per_actor = per_actor
        self.max_chars = max_chars
        self.on_end = on_end
        self._by_actor: dict[str, OrderedDict[str, _Live]] = {}
        self._remove: Callable[[], None] | None = None

    def install(self) -> StreamLog:
        if self._remove is None:
            self._remove = add_global_listener(self.on_event)
        return self

    def close(self) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None

    # ----- reading -----------------------------------------------------------------------------------
    def actors(self) -> list[str]:
        return list(self._by_actor)

    def messages(self, actor: str, limit: int | None = None) -> list[MessageRecord]:
        """The actor's messages, oldest first (the last `limit` of them)."""
        kept = list(self._by_actor.get(actor, {}).values())
        return [live.record() for live in (kept[-limit:] if limit else kept)]

    def find(self, correlation_id: str) -> MessageRecord | None:
        for kept in self._by_actor.values():
            if correlation_id in kept:
                return kept[correlation_id].record()
        return None

    def forget(self, actor: str) -> None:
        self._by_actor.pop(actor, None)

    def preload(self, records: list[MessageRecord]) -> None:
        """Keep `records` (oldest first; from a journal of an earlier run) as if they had just ended."""
        for record in records:
            live = _Live(record.actor, record.correlation_id, record.operation, record.sent_at, record.status,
                         record.started_at, record.ended_at, record.queued_s, record.input, [record.text],
                         [record.thinking], [0, 0], record.truncated, record.chunks, record.error,
                         record.error_type, record.metrics)
            kept = self._by_actor.setdefault(record.actor, OrderedDict())
            kept[record.correlation_id] = live
            while len(kept) > self.per_actor:
                kept.popitem(last=False)

    # ----- listening --------------------------------------------------------------------------------------
    def on_event(self, event: ActorEvent) -> None:
        if event.correlation_id is None:
            return
        kept = self._by_actor.setdefault(event.actor, OrderedDict())
        live = kept.get(event.correlation_id)
        kind = event.kind
        if live is None:
            if kind not in (events.QUEUED, events.STARTED):
                return  # a message from before we listened, or one already dropped
            live = _Live(event.actor, event.correlation_id, event.operation or "", event.at,
                         room=[self.max_chars, self.max_chars])
            kept[event.correlation_id] = live
            while len(kept) > self.per_actor:
                kept.popitem(last=False)
        if kind == events.CHUNK:
            chunk = event.data
            live.chunks += 1
            if isinstance(chunk, str):  # actors that stream plain strings
                live.keep(0, chunk)
                return
            text, thinking = getattr(chunk, "text", None), getattr(chunk, "thinking", None)
            if text:
                live.keep(0, text)
            if thinking:
                live.keep(1, thinking)
            metrics = getattr(chunk, "metrics", None)
            if isinstance(metrics, RequestMetrics):
                live.metrics = metrics
        elif kind == events.QUEUED:
            live.input = describe_input(event.data)
        elif kind == events.STARTED:
            live.status = "running"
            live.started_at = event.at
            if isinstance(event.data, int | float):
                live.queued_s = float(event.data)
                live.sent_at = event.at - float(event.data)
        elif kind == events.DONE:
            live.status, live.ended_at = "done", event.at
            metrics = getattr(event.data, "metrics", None)
            if isinstance(metrics, RequestMetrics):
                live.metrics = metrics
        elif kind == events.ERROR:
            live.status, live.ended_at = "error", event.at
            live.error = str(event.data)
            live.error_type = type(event.data).__name__
        elif kind == events.CANCELLED:
            live.status, live.ended_at = "cancelled", event.at
        if self.on_end is not None and kind in _ENDS:
            self.on_end(live.record())


def format_record(record: MessageRecord) -> str:
    """One message as text: a head line (time, operation, correlation id, status, figures), its input
    (`> ` lines), thinking, the streamed text and how it ended. `workbench logs` and the actors screen
    both print it."""
    sent = datetime.fromtimestamp(record.sent_at).strftime("%H:%M:%S")
    head = f"[{sent}] {record.operation} {record.correlation_id} {record.status}"
    figures = []
    metrics = record.metrics
    queued = metrics.queued_s if metrics is not None else record.queued_s
    if queued is not None:
        figures.append(f"queued {queued:.3f}s")
    if metrics is not None:
        if metrics.ttft_s is not None:
            figures.append(f"ttft {metrics.ttft_s:.3f}s")
        figures.append(f"e2e {metrics.e2e_s:.3f}s")
        if metrics.output_tokens is not None:
            figures.append(f"{metrics.output_tokens} tokens out")
    if figures:
        head += " · " + ", ".join(figures)
    lines = [head, *(f"> {line}" for line in record.input.splitlines())]
    if record.thinking:
        lines.append(f"(thinking) {record.thinking}")
    if record.text:
        lines.append(record.text)
    if record.truncated:
        lines.append("[… the stream went on; only its start is kept]")
    if record.error:
        lines.append(f"error: {record.error_type or 'Error'}: {record.error}")
    return "\n".join(lines)

