"""The in-process family (seed 000's `NodeModelRuntimeActor`): the model runs inside workbench.

Loading and inference run on one worker thread per actor, never on the event loop, so the UI stays
responsive while a model thinks. Streams cross from the thread to the loop through a queue; a
cancelled stream sets the message's `cancel_event`, which the producing loop checks every token, and
the actor waits for the thread to stop before it takes the next message (a model is not re-entrant).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

from workbench.actors import events
from workbench.actors.events import ActorEvent
from workbench.metrics.sampler import ProcessTarget
from workbench.runtimes.base import ModelRuntimeActor

T = TypeVar("T")
ProgressCallback = Callable[[float, str], None]

_ITEM, _ERROR, _END = "item", "error", "end"


class InProcessModelRuntimeActor(ModelRuntimeActor):
    """Subclasses implement `load` and `unload` (run on the worker thread) and the stream hooks,
    using `run_blocking` and `stream_blocking` to reach the thread."""

    family: ClassVar[str] = "in-process"

    def __init__(self, model: str, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._executor: ThreadPoolExecutor | None = None
        self.load_progress: tuple[float, str] = (0.0, "")

    # ----- subclass hooks (worker thread) -------------------------------------------------------------
    def load(self, progress: ProgressCallback) -> None:
        """Load the model; call `progress(fraction, what)` as it goes."""

    def unload(self) -> None:
        """Drop every reference to the model so its memory is freed."""

    # ----- lifecycle ------------------------------------------------------------------------------------
    async def on_start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"wb-{self.name}")
        await self.run_blocking(self.load, self._progress_reporter())

    async def on_stop(self) -> None:
        if self._executor is None:
            return
        await self.run_blocking(self.unload)
        self._executor.shutdown(wait=True)
        self._executor = None

    def memory_target(self) -> ProcessTarget | None:
        return ProcessTarget.this_process()

    # ----- bridges to the worker thread ------------------------------------------------------------------
    async def run_blocking(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function` on this actor's thread; the loop waits without blocking."""
        if self._executor is None:
            raise RuntimeError(f"actor {self.name} is not started")
        future = asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        return await _wait_uninterrupted(future)

    async def stream_blocking(
        self, produce: Callable[[threading.Event], Iterator[T]], cancel: threading.Event
    ) -> AsyncIterator[T]:
        """Iterate `produce(cancel)` on the worker thread and yield its items here as they come."""
        if self._executor is None:
            raise RuntimeError(f"actor {self.name} is not started")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def post(kind: str, value: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed under us: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        def work() -> None:
            try:
                for item in produce(cancel):
                    post(_ITEM, item)
                    if cancel.is_set():
                        break
            except BaseException as error:  # noqa: BLE001 - handed to the loop, raised there
                post(_ERROR, error)
            finally:
                post(_END, None)

        future = loop.run_in_executor(self._executor, work)
        ended = False  # the producer finished on its own (its end can arrive before the future is done)
        try:
            while True:
                kind, value = await queue.get()
                if kind == _END:
                    ended = True
                    break
                if kind == _ERROR:
                    ended = True
                    raise value
                yield value
        finally:
            if not ended:  # the consumer left early: tell the producer to stop at its next item
                cancel.set()
            await _wait_uninterrupted(future)

    def _progress_reporter(self) -> ProgressCallback:
        loop = asyncio.get_running_loop()

        def report(fraction: float, what: str) -> None:
            self.load_progress = (fraction, what)
            event = ActorEvent(events.PROGRESS, self.name, data=(fraction, what))
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.emit, event)

        return report


async def _wait_uninterrupted(future: asyncio.Future[T]) -> T:
    """Await a thread's future to its end even if we are cancelled meanwhile, then re-raise the cancel.

    The thread cannot be interrupted; letting the actor move on while it still runs would put two
    requests on one model at once. Producers check their cancel flag every token, so this is short.
    """
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(future)
            break
        except asyncio.CancelledError:
            if future.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


# Seed 000's name for this family.
NodeModelRuntimeActor = InProcessModelRuntimeActor
