"""`thread` placement: the worker runs on one thread of the app's own process.

Today's behaviour, kept for library use and fast unit tests. Streams cross from the thread to the
loop through a queue; a cancelled stream sets the message's cancel flag, which the producer checks
every token, and the placement waits for the thread to stop before returning (a model is not
re-entrant). A load cannot be interrupted here, and memory figures are the whole app's
(`shared=True`): use `process` placement to measure one model.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from workbench.metrics.memory import MemoryReading, ProcessMemory, node_name, read_memory
from workbench.metrics.sampler import ProcessTarget
from workbench.runtimes.placement.base import ModelWorker, Placement, ProgressCallback, WorkerSpec, load_worker_class
from workbench.runtimes.types import Chunk, Embeddings

T = TypeVar("T")
_ITEM, _ERROR, _END = "item", "error", "end"


class ThreadPlacement(Placement):
    """Options: `worker=` an already built `ModelWorker` to host (e.g. one sharing a preloaded model)."""

    kind = "thread"
    interruptible = False

    def __init__(self, spec: WorkerSpec, *, worker: ModelWorker | None = None, **options: Any) -> None:
        super().__init__(spec, **options)
        self.worker: ModelWorker | None = worker
        self._executor: ThreadPoolExecutor | None = None
        self._baseline: MemoryReading | None = None

    # ----- lifecycle ------------------------------------------------------------------------------------
    async def start(self, progress: ProgressCallback) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"wb-{self.spec.name}")
        loop = asyncio.get_running_loop()

        def report(fraction: float, what: str) -> None:  # worker thread → loop
            with contextlib.suppress(RuntimeError):  # the loop closed under us: nobody is listening
                loop.call_soon_threadsafe(progress, fraction, what)

        def build_and_load() -> None:
            if self.worker is None:
                self.worker = load_worker_class(self.spec.factory)(self.spec)
            self.worker.import_libraries()
            self._baseline = read_memory()
            self.worker.load(report)

        await self.run_blocking(build_and_load)

    async def stop(self) -> None:
        if self._executor is None:
            return
        if self.worker is not None:
            await self.run_blocking(self.worker.unload)
        self._executor.shutdown(wait=True)
        self._executor = None

    def kill(self) -> None:
        """A thread cannot be killed: the load runs to its end and `stop` then unloads it."""

    # ----- requests -------------------------------------------------------------------------------------
    async def stream(self, operation: str, request: dict[str, Any], cancel: threading.Event) -> AsyncIterator[Chunk]:
        worker = self._require()
        async for chunk in self.stream_blocking(lambda flag: worker.stream(operation, request, flag), cancel):
            yield chunk

    async def embed(self, request: dict[str, Any]) -> Embeddings:
        return await self.run_blocking(self._require().embed, request)

    async def stats(self) -> dict[str, Any]:
        return self.worker.stats() if self.worker is not None else {}

    async def memory(self) -> ProcessMemory | None:
        now = read_memory()
        baseline = self._baseline
        return ProcessMemory(
            pid=os.getpid(), node=node_name(), placement=self.kind, shared=True,
            rss_bytes=now.rss_bytes, uss_bytes=now.uss_bytes,
            baseline_rss_bytes=baseline.rss_bytes if baseline else None,
            baseline_uss_bytes=baseline.uss_bytes if baseline else None,
        )

    def memory_target(self) -> ProcessTarget | None:
        return ProcessTarget.this_process()

    def baseline(self) -> MemoryReading | None:
        return self._baseline

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "pid": os.getpid(), "node": node_name()}

    # ----- bridges to the worker thread ------------------------------------------------------------------
    def _require(self) -> ModelWorker:
        if self.worker is None or self._executor is None:
            raise RuntimeError(f"worker for {self.spec.name} is not started")
        return self.worker

    async def run_blocking(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function` on this worker's thread; the loop waits without blocking."""
        if self._executor is None:
            raise RuntimeError(f"worker for {self.spec.name} is not started")
        future = asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        return await wait_uninterrupted(future)

    async def stream_blocking(
        self, produce: Callable[[threading.Event], Iterator[T]], cancel: threading.Event
    ) -> AsyncIterator[T]:
        """Iterate `produce(cancel)` on the worker thread and yield its items here as they come."""
        if self._executor is None:
            raise RuntimeError(f"worker for {self.spec.name} is not started")
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
            await wait_uninterrupted(future)


async def wait_uninterrupted(future: asyncio.Future[T]) -> T:
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
