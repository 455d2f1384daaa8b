"""The global concurrency limit: how many model actions may run at once, across every actor."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)

LIMIT_MIN = 1
LIMIT_MAX = 64


@dataclass(frozen=True, slots=True)
class LimitSnapshot:
    limit: int
    running: int
    waiting: int


LimitListener = Callable[[LimitSnapshot], None]


def default_limit_value() -> int:
    """Two slots per pair of cores, at least one: enough to compare two panes without starving the UI."""
    return max(LIMIT_MIN, min(4, os.cpu_count() or 1))


class ConcurrencyLimit:
    """A semaphore whose size can change while work is running.

    Raising the limit admits waiters at once. Lowering it never interrupts running work: new work
    simply waits until the number running has drained below the new value, so after that drain the
    number running never exceeds the limit in force. Waiters are admitted first come, first served.
    """

    def __init__(self, limit: int | None = None) -> None:
        self._limit = self._checked(default_limit_value() if limit is None else limit)
        self._running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._listeners: list[LimitListener] = []

    @staticmethod
    def _checked(value: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"concurrency limit must be an integer, not {value!r}")
        if not LIMIT_MIN <= value <= LIMIT_MAX:
            raise ValueError(f"concurrency limit must be between {LIMIT_MIN} and {LIMIT_MAX}, not {value}")
        return value

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    def snapshot(self) -> LimitSnapshot:
        return LimitSnapshot(self._limit, self._running, self.waiting)

    def set_limit(self, value: int) -> None:
        self._limit = self._checked(value)
        self._admit()
        self._notify()

    def on_change(self, listener: LimitListener) -> Callable[[], None]:
        """Call `listener` whenever the limit, running or waiting counts change."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def acquire(self) -> None:
        if self._running < self._limit and not self.waiting:
            self._running += 1
            self._notify()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._notify()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Admitted in the same instant we were cancelled: hand the slot on.
                self.release()
            else:
                waiter.cancel()
                self._discard(waiter)
                self._notify()
            raise

    def release(self) -> None:
        if self._running <= 0:
            raise RuntimeError("ConcurrencyLimit.release() called more often than acquire()")
        self._running -= 1
        self._admit()
        self._notify()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def _admit(self) -> None:
        while self._waiters and self._running < self._limit:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            waiter.set_result(None)
            self._running += 1

    def _discard(self, waiter: asyncio.Future[None]) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass

    def _notify(self) -> None:
        """Tell listeners; one that fails is logged, never allowed to break an acquire or release."""
        snapshot = self.snapshot()
        for listener in list(self._listeners):
            try:
                listener(snapshot)
            except Exception:
                log.exception("concurrency limit listener %r failed", listener)


_global_limit: ConcurrencyLimit | None = None


def global_limit() -> ConcurrencyLimit:
    """The process-wide limit every actor uses unless it is given another one."""
    global _global_limit
    if _global_limit is None:
        _global_limit = ConcurrencyLimit()
    return _global_limit
