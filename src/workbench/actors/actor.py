"""The actor: a mailbox that runs its messages one at a time, in the order they were sent.

This is seed 000's task chain in asyncio. Each `send` appends to the chain and hands the caller a
`Reply` at once, so callers stay asynchronous while the actor is sequential within itself. An error
fails only the message that raised it (and is emitted as an `error` event); the chain goes on with
the next message.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

from workbench.actors import events
from workbench.actors.events import ActorEvent, EventEmitter
from workbench.actors.limit import ConcurrencyLimit, global_limit
from workbench.errors import ActorFailed, ActorStopped, MessageCancelled

log = logging.getLogger(__name__)

T = TypeVar("T")


def new_correlation_id() -> str:
    return uuid.uuid4().hex[:16]


class ActorState(enum.StrEnum):
    CREATED = "created"
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class ActorCrashed(Exception):
    """Raised by a handler when the actor itself is broken (its model process died, say): the message
    fails, the actor turns FAILED, and a supervisor may restart it."""


@dataclass(eq=False)
class Message:
    """One request to an actor. `cancel_event` is a thread-safe flag for work running off the loop."""

    operation: str
    payload: Any = None
    correlation_id: str = field(default_factory=new_correlation_id)
    stream: bool = False
    limited: bool = True
    sent_at: float = field(default_factory=time.perf_counter)
    started_at: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


class _End:
    pass


_END = _End()


class Reply(Generic[T]):
    """What a caller gets back from `send`: await it for the result, or `async for` over its chunks
    when the message streams. `cancel()` cancels the message whether it is queued or running.

    A streamed reply has one consumer: iterate it, or await it (which collects the chunks through
    `aggregate`).
    """

    def __init__(
        self,
        actor: Actor,
        message: Message,
        aggregate: Callable[[list[Any]], T] | None = None,
    ) -> None:
        self.actor = actor
        self.message = message
        self._aggregate = aggregate
        loop = asyncio.get_running_loop()
        self._outcome: asyncio.Future[Any] = loop.create_future()
        self._chunks: asyncio.Queue[Any] | None = asyncio.Queue() if message.stream else None
        self._consumed = False

    @property
    def correlation_id(self) -> str:
        return self.message.correlation_id

    def done(self) -> bool:
        return self._outcome.done()

    def cancel(self) -> bool:
        """Cancel this message; returns False when it had already finished."""
        if self._outcome.done():
            return False
        self.message.cancel_event.set()
        self.actor._cancel(self)
        return True

    async def result(self) -> T:
        try:
            if self._chunks is None:
                return await asyncio.shield(self._outcome)
            chunks = [chunk async for chunk in self._iterate()]
            return self._aggregate(chunks) if self._aggregate else chunks  # type: ignore[return-value]
        except asyncio.CancelledError:
            self.cancel()
            raise

    def __await__(self) -> Generator[Any, None, T]:
        return self.result().__await__()

    def __aiter__(self) -> AsyncIterator[Any]:
        if self._chunks is None:
            raise TypeError(f"{self.message.operation} does not stream; await it instead")
        return self._iterate()

    async def _iterate(self) -> AsyncGenerator[Any, None]:
        if self._consumed:
            raise RuntimeError("a streamed reply can be consumed once")
        self._consumed = True
        assert self._chunks is not None
        try:
            while True:
                item = await self._chunks.get()
                if item is _END:
                    break
                yield item
            await self._outcome  # raises the message's error, if it ended with one
        finally:
            if not self._outcome.done():
                self.cancel()

    # Called by the actor.
    def _push(self, chunk: Any) -> None:
        if self._chunks is not None:
            self._chunks.put_nowait(chunk)

    def _resolve(self, value: Any) -> bool:
        """Settle with a result; False when the reply had already settled (it settles once)."""
        if self._outcome.done():
            return False
        self._outcome.set_result(value)
        self._push(_END)
        return True

    def _fail(self, error: BaseException) -> bool:
        """Settle with an error; False when the reply had already settled (it settles once)."""
        if self._outcome.done():
            return False
        self._outcome.set_exception(error)
        self._outcome.exception()  # mark retrieved: a caller that dropped its reply is not an error
        self._push(_END)
        return True


_STOP = object()
_counter = itertools.count(1)


class Actor(EventEmitter):
    """Base class. Subclasses implement `receive` (or `handle_<operation>` methods) and may override
    `on_start` (load a model) and `on_stop` (free it).

    A handler that returns an awaitable gives one result; a handler that is an async generator
    streams: each item it yields is a chunk, pushed to the caller and emitted as a `chunk` event.
    """

    def __init__(self, name: str | None = None, *, limit: ConcurrencyLimit | None = None) -> None:
        super().__init__()
        self.name = name or f"{type(self).__name__.lower()}-{next(_counter)}"
        self.limit = limit if limit is not None else global_limit()
        self.state = ActorState.CREATED
        self.restarts = 0
        self.errors = 0
        self.last_error: BaseException | None = None
        self._mailbox: deque[Reply[Any] | object] = deque()
        self._has_mail = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._current: Reply[Any] | None = None
        self._current_task: asyncio.Task[None] | None = None
        self._accepting = True
        # stop() and restart() hold this, so they never overlap (a restart pressed while a stop or an
        # automatic restart is under way waits for it) and one mailbox never has two workers.
        self._lifecycle = asyncio.Lock()

    # ----- lifecycle hooks ---------------------------------------------------------------------
    async def on_start(self) -> None:
        """Runs first in the worker, before any message: load what the actor needs."""

    async def on_stop(self) -> None:
        """Runs once the worker has ended: free what `on_start` took."""

    async def on_stopping(self) -> bool:
        """Runs at the start of `stop()` and `restart()` (the lifecycle lock held), before they wait
        for the worker: the place to end work that would make them wait, such as a model load that
        can be killed. Return True when the queued messages can no longer run (nothing is left to run
        them on), so the stop drops them instead of draining; the default does nothing."""
        return False

    # ----- message handling ----------------------------------------------------------------------
    def receive(self, message: Message) -> Any:
        """Seed 000's abstract `*send`: dispatch to `handle_<operation>`."""
        handler = getattr(self, f"handle_{message.operation}", None)
        if handler is None:
            raise NotImplementedError(f"{type(self).__name__} has no handler for {message.operation!r}")
        return handler(message)

    # ----- public API ------------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Messages waiting in the mailbox (not counting the one running)."""
        return sum(1 for item in self._mailbox if isinstance(item, Reply) and not item.done())

    def _has_waiting(self) -> bool:
        return any(isinstance(item, Reply) and not item.done() for item in self._mailbox)

    @property
    def current(self) -> Reply[Any] | None:
        return self._current

    def send(
        self,
        operation: str,
        payload: Any = None,
        *,
        stream: bool = False,
        limited: bool = True,
        correlation_id: str | None = None,
        aggregate: Callable[[list[Any]], Any] | None = None,
        reply_class: type[Reply[Any]] = Reply,
    ) -> Reply[Any]:
        """Queue a message and return its reply at once."""
        self._check_accepting(f"send {operation!r} to")
        message = Message(operation, payload, stream=stream, limited=limited)
        if correlation_id:
            message.correlation_id = correlation_id
        reply = reply_class(self, message, aggregate)
        self._mailbox.append(reply)
        self._has_mail.set()
        self._ensure_worker()
        self._emit(events.QUEUED, message, message.payload)  # the input, for stream inspection
        self._emit_state()
        return reply

    def start(self) -> None:
        """Start the worker (and so `on_start`) now rather than on the first message. A stopped actor
        raises ActorStopped: only `restart()` brings it back, so a stop is never silently undone."""
        self._check_accepting("start")
        self._ensure_worker()

    async def wait_ready(self) -> None:
        """Wait until `on_start` has finished; raises ActorFailed when it failed, ActorStopped when
        the actor was stopped."""
        self._check_accepting("wait for")
        self._ensure_worker()
        while self.state in (ActorState.CREATED, ActorState.STARTING):
            await asyncio.sleep(0.01)
        if self.state == ActorState.FAILED:
            raise ActorFailed(f"actor {self.name} failed to start: {self.last_error}")

    async def stop(self, *, drain: bool = True) -> None:
        """End the actor cleanly: with `drain`, after every queued message has run; without, queued
        messages are cancelled and the running one is cancelled too. Stopping a stopped actor does
        nothing. Calls overlapping a restart wait for it (the cancelling is done at once)."""
        self._accepting = False
        if not drain:
            self._cancel_all()
        async with self._lifecycle:
            await self._stop_now(drain=drain)

    def _cancel_all(self) -> None:
        self._drop_queue()
        if self._current is not None:
            self._current.cancel()

    async def _stop_now(self, *, drain: bool) -> None:
        """stop()'s work; the caller holds `_lifecycle`."""
        self._accepting = False
        try:
            abandoned = await self.on_stopping()
        except Exception:  # a stop must still stop: the hook's failure is logged, not raised
            log.exception("on_stopping of actor %s failed", self.name)
            abandoned = False
        if abandoned:
            drain = False
        if not drain:
            self._cancel_all()
        if self.state == ActorState.STOPPED and self._worker is None:
            return
        worker = self._worker
        if worker is not None and not worker.done():
            self._set_state(ActorState.STOPPING)
            self._mailbox.append(_STOP)
            self._has_mail.set()
            await asyncio.shield(worker)
        self._worker = None
        try:
            await self.on_stop()
        finally:
            self._set_state(ActorState.STOPPED)

    async def restart(self) -> None:
        """Stop (dropping queued work), then start afresh; used by a supervisor after a failure.
        Restarts and stops are serialised: one that overlaps another waits for it to finish."""
        if self.state != ActorState.STOPPED:
            self._cancel_all()
        async with self._lifecycle:
            await self._stop_now(drain=False)
            self._start_again()

    def _start_again(self) -> None:
        self.restarts += 1
        self._mailbox.clear()
        self._has_mail.clear()
        self._accepting = True
        self.state = ActorState.CREATED
        self._ensure_worker()
        self._emit_state()

    # ----- internals -------------------------------------------------------------------------------
    def _check_accepting(self, what: str) -> None:
        if not self._accepting:
            raise ActorStopped(f"actor {self.name} is stopped; restart it to {what} it")

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"actor:{self.name}")

    async def _run(self) -> None:
        try:
            await self._work()
        except asyncio.CancelledError:
            # The worker itself was cancelled (the loop is closing): nobody may be left waiting.
            self._cancel_all()
            raise

    async def _work(self) -> None:
        self._set_state(ActorState.STARTING)
        started = await self._start_safely()
        if started:
            self._set_state(ActorState.IDLE)
        while True:
            while not self._mailbox:
                if self.state == ActorState.BUSY:  # nothing is really waiting any more
                    self._set_state(ActorState.IDLE)
                self._has_mail.clear()
                await self._has_mail.wait()
            item = self._mailbox.popleft()
            if item is _STOP:
                return
            assert isinstance(item, Reply)
            if item.done():  # cancelled while queued
                continue
            if self.state == ActorState.FAILED:
                failure = ActorFailed(f"actor {self.name} has failed ({self.last_error}); restart it")
                if item._fail(failure):
                    self._emit(events.ERROR, item.message, failure)
                continue
            # The task exists before anything (a state listener, say) can cancel the message, so a
            # cancel always goes through it.
            task = asyncio.get_running_loop().create_task(self._execute(item))
            self._current = item
            self._current_task = task
            self._set_state(ActorState.BUSY)
            await asyncio.wait({task})
            if not item.done():
                # Cancelled before it began to run (or ended by something `_execute` does not catch):
                # `_execute` never settled it, so do it here, once.
                self._after_message()
                error = None if task.cancelled() else task.exception()
                if isinstance(error, Exception):
                    self._record_error(item, error)
                else:
                    self._cancelled(item)

    async def _start_safely(self) -> bool:
        try:
            await self.on_start()
            return True
        except Exception as error:  # a failed load must not kill the worker: it answers with errors
            self.last_error = error
            self.errors += 1
            self._set_state(ActorState.FAILED)
            self.emit(ActorEvent(events.ERROR, self.name, data=error))
            return False

    async def _execute(self, reply: Reply[Any]) -> None:
        """Run one message. The slot is released and the actor's state updated *before* the caller's
        reply settles, so a caller that resumes sees the actor as it really is."""
        message = reply.message
        acquired = False
        settle: Callable[[], None]
        outcome: Any = None
        try:
            if message.limited:
                await self.limit.acquire()
                acquired = True
            message.started_at = time.perf_counter()
            self._emit(events.STARTED, message, message.started_at - message.sent_at)
            outcome = self.receive(message)
            if inspect.isasyncgen(outcome):
                async for chunk in outcome:
                    reply._push(chunk)
                    self._emit(events.CHUNK, message, chunk)
                result: Any = None
            elif inspect.isawaitable(outcome):
                result = await outcome
            else:
                result = outcome
            if message.cancelled:
                raise asyncio.CancelledError
            settle = partial(self._succeed, reply, result)
        except asyncio.CancelledError:
            settle = partial(self._cancelled, reply)
        except ActorCrashed as error:
            self.state = ActorState.FAILED  # announced once the reply settles
            settle = partial(self._record_error, reply, error, announce_state=True)
        except Exception as error:
            settle = partial(self._record_error, reply, error)
        finally:
            if inspect.isasyncgen(outcome):
                await outcome.aclose()
            if acquired:
                self.limit.release()
        self._after_message()
        settle()

    def _after_message(self) -> None:
        """The running message has ended: the actor is idle unless another message really waits."""
        self._current = None
        self._current_task = None
        if self.state == ActorState.BUSY and not self._has_waiting():
            self._set_state(ActorState.IDLE)

    # Each settles the reply and emits its final event only if the reply had not settled yet, so
    # every message ends exactly once (`done`, `error` or `cancelled`) whatever races with it.
    def _succeed(self, reply: Reply[Any], result: Any) -> None:
        if reply._resolve(result):
            self._emit(events.DONE, reply.message, result)

    def _cancelled(self, reply: Reply[Any]) -> None:
        if reply._fail(MessageCancelled(f"{reply.message.operation} {reply.correlation_id} was cancelled")):
            self._emit(events.CANCELLED, reply.message)

    def _record_error(self, reply: Reply[Any], error: Exception, *, announce_state: bool = False) -> None:
        if reply._fail(error):
            self.errors += 1
            self.last_error = error
            self._emit(events.ERROR, reply.message, error)
        if announce_state:
            self._emit_state()

    def _cancel(self, reply: Reply[Any]) -> None:
        if reply is self._current and self._current_task is not None:
            self._current_task.cancel()
            return
        # Queued: it leaves the mailbox now, so `queued` and the state follow what really waits.
        try:
            self._mailbox.remove(reply)
        except ValueError:
            pass
        self._cancelled(reply)
        if self.state == ActorState.BUSY and self._current is None and not self._has_waiting():
            self._set_state(ActorState.IDLE)
        else:
            self._emit_state()

    def _drop_queue(self) -> None:
        for item in list(self._mailbox):
            if isinstance(item, Reply) and not item.done():
                item.message.cancel_event.set()
                self._cancel(item)
        stop_marks = [item for item in self._mailbox if item is _STOP]
        self._mailbox.clear()
        self._mailbox.extend(stop_marks)  # a stop under way still needs its mark

    def _emit(self, kind: str, message: Message, data: Any = None) -> None:
        self.emit(ActorEvent(kind, self.name, message.correlation_id, message.operation, data))

    def _set_state(self, state: ActorState) -> None:
        if state != self.state:
            self.state = state
            self._emit_state()

    def _emit_state(self) -> None:
        self.emit(ActorEvent(events.STATE, self.name, data=self.state))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.state}>"
