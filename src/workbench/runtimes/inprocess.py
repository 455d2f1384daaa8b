"""The in-process family (seed 000's `NodeModelRuntimeActor`): workbench itself runs the model.

The actor keeps its mailbox, the concurrency limit, metrics and events; the model lives in a
`ModelWorker` owned by a `Placement` (`runtimes/placement/`): on a thread of the app (`thread`, the
library default: fast, but every model shares one process) or in a child process of its own
(`process`, the default of the app and commands: true per-model memory, crash isolation, a load
that `stop` can interrupt). A runtime names its worker class in `worker_factory` and passes the
options it needs through `worker_options()`; its stream hooks validate the request here and hand it
to the worker with `stream_worker` / `embed_worker`.

Subclasses without a `worker_factory` (small test actors) implement `load`/`unload` on the actor
and reach the thread with `run_blocking` / `stream_blocking`; they always run on `thread`.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel

from workbench.actors import events
from workbench.actors.actor import ActorState, Message
from workbench.actors.events import ActorEvent
from workbench.metrics.sampler import ProcessTarget
from workbench.runtimes.base import ModelRuntimeActor
from workbench.runtimes.placement import (
    LIBRARY_PLACEMENT,
    ModelWorker,
    Placement,
    WorkerDied,
    WorkerSpec,
    create_placement,
)
from workbench.runtimes.placement.base import ProgressCallback
from workbench.runtimes.placement.thread import ThreadPlacement
from workbench.runtimes.types import Chunk, Embeddings

T = TypeVar("T")

__all__ = ["InProcessModelRuntimeActor", "NodeModelRuntimeActor", "ProgressCallback"]


class InProcessModelRuntimeActor(ModelRuntimeActor):
    """Options: `placement=` "thread" (default here) or "process" (or any registered placement),
    `placement_options=` passed to the placement (e.g. `hang_timeout_s` for `process`)."""

    family: ClassVar[str] = "in-process"
    worker_factory: ClassVar[str | None] = None  # "module:Class" of this runtime's ModelWorker

    def __init__(
        self,
        model: str,
        *,
        placement: str = LIBRARY_PLACEMENT,
        placement_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        if self.worker_factory is None and placement != "thread":
            raise ValueError(f"{type(self).__name__} has no worker class; it runs with placement='thread' only")
        self.placement_name = placement
        self.placement_options = dict(placement_options or {})
        self.placement: Placement | None = None
        self.load_progress: tuple[float, str] = (0.0, "")
        self._aborting_load = False

    # ----- what the worker is built from ---------------------------------------------------------------
    def worker_options(self) -> dict[str, Any]:
        """JSON-able options for this runtime's worker (subclasses add theirs)."""
        return {"threads": self.threads}

    def worker_spec(self) -> WorkerSpec:
        factory = self.worker_factory or f"{__name__}:_ActorHostedWorker"
        return WorkerSpec(factory=factory, model=self.model, options=self.worker_options(), label=self.spec)

    def create_worker_placement(self) -> Placement:
        """The placement for a fresh worker (subclasses may host a prebuilt worker on a thread)."""
        if self.worker_factory is None:
            return ThreadPlacement(self.worker_spec(), worker=_ActorHostedWorker(self))
        return create_placement(self.placement_name, self.worker_spec(), **self.placement_options)

    # ----- subclass hooks without a worker class (worker thread) -------------------------------------------
    def load(self, progress: ProgressCallback) -> None:
        """Load the model; call `progress(fraction, what)` as it goes."""

    def unload(self) -> None:
        """Drop every reference to the model so its memory is freed."""

    # ----- lifecycle ------------------------------------------------------------------------------------
    async def on_start(self) -> None:
        self._aborting_load = False
        placement = self.create_worker_placement()
        self.placement = placement
        try:
            await placement.start(self._progress_reporter())
        except BaseException:
            if self._aborting_load:  # a stop killed the load: not a failure of the actor
                return
            self.placement = None
            placement.kill()
            raise
        placement.on_death = self._worker_died

    def _worker_died(self, error: WorkerDied) -> None:
        """The worker died with nothing running (a request running gets the error itself): a message
        that raises it turns the actor FAILED now, so the supervisor restarts it before anyone asks."""
        if self.state == ActorState.IDLE and self.queued == 0:
            self.send("worker_died", error, limited=False)

    def handle_worker_died(self, message: Message) -> None:
        raise message.payload

    async def on_stop(self) -> None:
        placement, self.placement = self.placement, None
        if placement is not None:
            await placement.stop()

    async def on_stopping(self) -> bool:
        """`stop()` and `restart()` (and so the app's quit) never wait for a load that can be ended
        now: a worker still loading is killed at once (when its placement can be), and the queued
        messages are dropped, as there is no model to run them on."""
        placement = self.placement
        if self.state == ActorState.STARTING and placement is not None and placement.interruptible:
            self._aborting_load = True
            placement.kill()
            return True
        return False

    def memory_target(self) -> ProcessTarget | None:
        placement = self.placement
        return placement.memory_target() if placement is not None else None

    async def runtime_stats(self) -> dict[str, Any]:
        placement = self.placement
        if placement is None:
            return {"placement": {"kind": self.placement_name, "pid": None, "node": None}}
        try:
            fields = await placement.stats()
        except WorkerDied as error:  # stats answer at once, even for a dead worker: say so
            fields = {"details": {"worker": str(error)}}
        return fields | {"placement": placement.describe(), "memory": await placement.memory()}

    # ----- handing requests to the worker ------------------------------------------------------------------
    def _require_placement(self) -> Placement:
        if self.placement is None:
            raise RuntimeError(f"actor {self.name} is not started")
        return self.placement

    async def stream_worker(self, operation: str, request: BaseModel, message: Message) -> AsyncIterator[Chunk]:
        """Stream the worker's answer to `request` ("generate" or "chat"), cancellable by `message`."""
        placement = self._require_placement()
        async for chunk in placement.stream(operation, request.model_dump(mode="json"), message.cancel_event):
            yield chunk

    async def embed_worker(self, request: BaseModel) -> Embeddings:
        return await self._require_placement().embed(request.model_dump(mode="json"))

    def hosted_worker(self) -> ModelWorker | None:
        """The worker object when it runs on a thread of this process (None for other placements)."""
        placement = self.placement
        return placement.worker if isinstance(placement, ThreadPlacement) else None

    # ----- bridges for actors without a worker class ------------------------------------------------------
    def _thread(self) -> ThreadPlacement:
        placement = self._require_placement()
        if not isinstance(placement, ThreadPlacement):
            raise RuntimeError(f"actor {self.name} does not run on a thread of this process")
        return placement

    async def run_blocking(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function` on this actor's thread; the loop waits without blocking."""
        return await self._thread().run_blocking(function, *args)

    def stream_blocking(
        self, produce: Callable[[threading.Event], Iterator[T]], cancel: threading.Event
    ) -> AsyncIterator[T]:
        """Iterate `produce(cancel)` on the actor's thread and yield its items here as they come."""
        return self._thread().stream_blocking(produce, cancel)

    def _progress_reporter(self) -> ProgressCallback:
        def report(fraction: float, what: str) -> None:  # called on the loop by the placement
            self.load_progress = (fraction, what)
            self.emit(ActorEvent(events.PROGRESS, self.name, data=(fraction, what)))

        return report


class _ActorHostedWorker(ModelWorker):
    """Runs an actor's own `load`/`unload` (actors without a worker class, thread placement only)."""

    def __init__(self, actor: InProcessModelRuntimeActor) -> None:
        super().__init__(actor.worker_spec())
        self.actor = actor

    def load(self, progress: ProgressCallback) -> None:
        self.actor.load(progress)

    def unload(self) -> None:
        self.actor.unload()


# Seed 000's name for this family.
NodeModelRuntimeActor = InProcessModelRuntimeActor
