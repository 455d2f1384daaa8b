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
from datetime import datetime
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from workbench.actors import events
from workbench.actors.events import ActorEvent, add_global_listener
from workbench.metrics.request import RequestMetrics

MessageStatus = Literal["queued", "running", "done", "error", "cancelled"]
DEFAULT_PER_ACTOR = 50
DEFAULT_MAX_CHARS = 64 * 1024
INPUT_MAX_CHARS = 4096


class MessageRecord(BaseModel):
    """One message an actor got, as far as it has gone. Times are wall-clock seconds (time.time())."""

    actor: str
    correlation_id: str
    operation: str
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


class StreamLog:
    """The recent messages of every actor in the process. `install()` starts listening; `close()`
    stops. Reading (`actors`, `messages`, `find`) never blocks the actors."""

    def __init__(self, per_actor: int = DEFAULT_PER_ACTOR, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        if per_actor < 1 or max_chars < 1:
            raise ValueError("a stream log keeps at least one message of at least one character")
        self.per_actor = per_actor
        self.max_chars = max_chars
        self._by_actor: dict[str, OrderedDict[str, MessageRecord]] = {}
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
        records = list(self._by_actor.get(actor, {}).values())
        return records[-limit:] if limit else records

    def find(self, correlation_id: str) -> MessageRecord | None:
        for records in self._by_actor.values():
            if correlation_id in records:
                return records[correlation_id]
        return None

    def forget(self, actor: str) -> None:
        self._by_actor.pop(actor, None)

    # ----- listening --------------------------------------------------------------------------------------
    def on_event(self, event: ActorEvent) -> None:
        if event.correlation_id is None:
            return
        records = self._by_actor.setdefault(event.actor, OrderedDict())
        record = records.get(event.correlation_id)
        if record is None:
            if event.kind not in (events.QUEUED, events.STARTED):
                return  # a message from before we listened
            record = MessageRecord(actor=event.actor, correlation_id=event.correlation_id,
                                   operation=event.operation or "", sent_at=event.at)
            records[event.correlation_id] = record
            while len(records) > self.per_actor:
                records.popitem(last=False)
        kind = event.kind
        if kind == events.QUEUED:
            record.input = describe_input(event.data)
        elif kind == events.STARTED:
            record.status = "running"
            record.started_at = event.at
            if isinstance(event.data, int | float):
                record.queued_s = float(event.data)
                record.sent_at = event.at - float(event.data)
        elif kind == events.CHUNK:
            self._append(record, event.data)
        elif kind == events.DONE:
            record.status = "done"
            record.ended_at = event.at
            metrics = getattr(event.data, "metrics", None)
            if isinstance(metrics, RequestMetrics):
                record.metrics = metrics
        elif kind == events.ERROR:
            record.status, record.ended_at = "error", event.at
            record.error = str(event.data)
            record.error_type = type(event.data).__name__
        elif kind == events.CANCELLED:
            record.status, record.ended_at = "cancelled", event.at

    def _append(self, record: MessageRecord, chunk: Any) -> None:
        record.chunks += 1
        for name in ("text", "thinking"):
            piece = getattr(chunk, name, None)
            if not isinstance(piece, str) or not piece:
                continue
            kept = getattr(record, name)
            room = self.max_chars - len(kept)
            if room < len(piece):
                record.truncated = True
                piece = piece[:max(room, 0)]
            if piece:
                setattr(record, name, kept + piece)
        metrics = getattr(chunk, "metrics", None)
        if isinstance(metrics, RequestMetrics):
            record.metrics = metrics
        if isinstance(chunk, str):  # actors that stream plain strings
            room = self.max_chars - len(record.text)
            record.truncated = record.truncated or room < len(chunk)
            record.text += chunk[:max(room, 0)]


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

