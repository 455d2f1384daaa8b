"""Events an actor emits while it works, and the small emitter they go through.

Every event a message causes carries that message's correlation id, so a listener (the UI, a session
journal, a benchmark) can tie a stream of chunks back to the request that caused it.
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
