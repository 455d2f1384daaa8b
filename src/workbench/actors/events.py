"""Events an actor emits while it works, and the small emitter they go through.

Every event a message causes carries that message's correlation id, so a listener (the UI, a session
journal, a benchmark) can tie a stream of chunks back to the request that caused it.

A message's life as events: `queued` (sent; in the mailbox; `data` is the message's payload) →
`started` (left the mailbox and holds its concurrency slot; `data` is the seconds it waited) → `chunk`… (streams only) → exactly one of `done`,
`error` or `cancelled`. A message cancelled while queued goes `queued` → `cancelled`.

Global listeners (`add_global_listener`) see every event of every actor in the process, for process-wide
observability (tracing, a metrics exporter). They are called synchronously, in the emitting actor's
call, so they must be cheap and must not block; with none registered they cost one truthiness check.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

log = logging.getLogger(__name__)

# Per-message events.
QUEUED: Final = "queued"
STARTED: Final = "started"
CHUNK: Final = "chunk"
DONE: Final = "done"
ERROR: Final = "error"
CANCELLED: Final = "cancelled"
# Per-actor events.
STATE: Final = "state"
PROGRESS: Final = "progress"
ANY: Final = "*"


@dataclass(frozen=True, slots=True)
class ActorEvent:
    """Something that happened inside an actor; `data` depends on `kind`."""

    kind: str
    actor: str
    correlation_id: str | None = None
    operation: str | None = None
    data: Any = None
    at: float = field(default_factory=time.time)


EventHandler = Callable[[ActorEvent], Awaitable[None] | None]
GlobalListener = Callable[[ActorEvent], None]

_global_listeners: list[GlobalListener] = []


def add_global_listener(listener: GlobalListener) -> Callable[[], None]:
    """Call `listener(event)` for every event of every actor in this process (a plain function: it
    runs inside the emitting actor's call). Returns a function that removes it."""
    _global_listeners.append(listener)
    return lambda: remove_global_listener(listener)


def remove_global_listener(listener: GlobalListener) -> None:
    """Stop calling `listener`; removing one that is not registered does nothing."""
    if listener in _global_listeners:
        _global_listeners.remove(listener)


def _notify_global(event: ActorEvent) -> None:
    for listener in list(_global_listeners):
        try:
            listener(event)
        except Exception:
            log.exception("global event listener %r failed on %s", listener, event.kind)


class EventEmitter:
    """`on`/`off`/`emit`. Handlers may be plain functions or coroutines; a failing handler is logged,
    never allowed to break the actor that emitted."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[EventHandler]] = {}
        self._pending: set[asyncio.Task[None]] = set()

    def on(self, kind: str, handler: EventHandler) -> Callable[[], None]:
        """Subscribe to one kind of event (or `"*"` for all); returns a function that unsubscribes."""
        self._handlers.setdefault(kind, []).append(handler)
        return lambda: self.off(kind, handler)

    def off(self, kind: str, handler: EventHandler) -> None:
        handlers = self._handlers.get(kind, [])
        if handler in handlers:
            handlers.remove(handler)

    def emit(self, event: ActorEvent) -> None:
        if _global_listeners:
            _notify_global(event)
        for handler in [*self._handlers.get(event.kind, ()), *self._handlers.get(ANY, ())]:
            try:
                outcome = handler(event)
            except Exception:
                log.exception("event handler %r failed on %s", handler, event.kind)
                continue
            if inspect.isawaitable(outcome):
                task = asyncio.ensure_future(outcome)
                self._pending.add(task)
                task.add_done_callback(self._handler_finished)

    def _handler_finished(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async event handler failed", exc_info=task.exception())
