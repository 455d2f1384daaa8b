"""The boundary between an in-process runtime's actor and the worker that holds its model.

Two halves, so that where a model runs never touches the runtime's own code:

- **`ModelWorker`** (worker side): loads the model, produces tokens, embeds, reports stats. It is
  plain blocking Python — no asyncio, no actor, no UI — and is built as `Class(spec)` wherever it
  runs: a thread of the app (`thread`), a child process (`process`), a Ray actor (`ray`).
  `TorchWorker` and `TransformersWorker` implement it.
- **`Placement`** (actor side, one per actor): owns one worker wherever it lives, starts it (with
  load progress), streams from it, cancels, stops and kills it, and says where it is and how much
  memory it holds. The actor keeps its mailbox, the concurrency limit, metrics and events; only
  the model moves.

A placement builds the worker, calls `import_libraries()`, reads the baseline memory, then
`load(progress)`. Everything that crosses the boundary is plain data: a `WorkerSpec` (pydantic) to build the worker,
requests as dicts (the pydantic request dumped with `model_dump(mode="json")`), `Chunk`s and
`Embeddings` back. A worker that dies surfaces as `WorkerDied`, an `ActorCrashed`: the message
fails with a clear error, the actor turns FAILED and a supervisor restarts it.
"""

from __future__ import annotations

import abc
import importlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from workbench.actors.actor import ActorCrashed
from workbench.errors import NotSupported, WorkbenchError
from workbench.metrics.memory import MemoryReading, ProcessMemory
from workbench.metrics.sampler import ProcessTarget
from workbench.runtimes.types import Chunk, Embeddings

ProgressCallback = Callable[[float, str], None]
"""`progress(fraction, what)`: fraction in 0..1, `what` a short phrase for the pane."""

OPERATIONS = ("generate", "chat")
"""Stream operations a worker serves: "generate" takes a dumped `GenerateRequest` (its `raw`
flag means `complete`), "chat" a dumped `ChatRequest` (think/summarize arrive as chat)."""


class WorkerSpec(BaseModel):
    """Everything needed to build a worker anywhere: JSON-able and picklable.

    `factory` is the worker class as `"package.module:Class"`; `options` are what the worker needs
    to construct itself (`threads`, `weights`, ...), all plain JSON values; `label` names the actor
    (its spec, e.g. `torch:smollm2`) in error messages.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    factory: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    model: str
    options: dict[str, Any] = Field(default_factory=dict)
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.model


class WorkerDied(ActorCrashed, WorkbenchError):
    """The worker holding the model is gone (killed, crashed, hung past its deadline, or sent
    garbage): the request fails with this message and the actor turns FAILED so it is restarted."""


def load_worker_class(factory: str) -> type[ModelWorker]:
    """Import `"module:Class"` and check it is a `ModelWorker`."""
    module_name, _, class_name = factory.partition(":")
    module = importlib.import_module(module_name)
    found = getattr(module, class_name, None)
    if not (isinstance(found, type) and issubclass(found, ModelWorker)):
        raise TypeError(f"{factory} is not a ModelWorker class")
    return found


class ModelWorker(abc.ABC):
    """Worker side of an in-process runtime: owns the model; blocking calls only.

    Calls come one at a time from one thread (the worker's own), except `stats()`, which may be
    asked from another thread while a stream runs, so it must only read attributes.
    """

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec

    @property
    def threads(self) -> int:
        import os

        return int(self.spec.options.get("threads") or os.cpu_count() or 1)

    def import_libraries(self) -> None:
        """Import the runtime's libraries (torch, transformers...) before the model loads, so the
        worker's baseline memory includes them and "model memory" is the model's alone."""

    @abc.abstractmethod
    def load(self, progress: ProgressCallback) -> None:
        """Load the model, calling `progress(fraction, what)` as it goes."""

    @abc.abstractmethod
    def unload(self) -> None:
        """Drop every reference to the model so its memory is freed."""

    def stream(self, operation: str, request: dict[str, Any], cancel: threading.Event) -> Iterator[Chunk]:
        """Yield answer/thinking `Chunk`s, then one `Chunk(done=True, usage=..., finish_reason=...)`.

        Check `cancel` every token: once it is set, stop within one token (finish "cancelled").
        """
        raise NotSupported(self.spec.name, operation)

    def embed(self, request: dict[str, Any]) -> Embeddings:
        """Vectors for a dumped `EmbedRequest`."""
        raise NotSupported(self.spec.name, "embed")

    def stats(self) -> dict[str, Any]:
        """Runtime-specific `RuntimeStats` fields (parameters, dtype, memory_bytes, details...)."""
        return {}


class Placement(abc.ABC):
    """Actor side: one per actor; owns one `ModelWorker` wherever it lives.

    All methods are called on the actor's event loop. `start` may be cancelled or the worker
    killed while it loads; a placement that cannot interrupt a load (`thread`) says so in
    `interruptible`. A dead worker raises `WorkerDied` from whichever call notices it.
    """

    kind: ClassVar[str] = "abstract"
    interruptible: ClassVar[bool] = False  # can `kill()` end a load or a stream at once?

    def __init__(self, spec: WorkerSpec, **options: Any) -> None:
        self.spec = spec
        self.options = options
        # Called on the event loop when the worker dies on its own (not by stop/kill), even with no
        # request running; the actor uses it to turn FAILED at once, so it is restarted.
        self.on_death: Callable[[WorkerDied], None] | None = None

    @abc.abstractmethod
    async def start(self, progress: ProgressCallback) -> None:
        """Create the worker and load its model. `progress` is called on the event loop."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Unload and end the worker (gracefully, killing it if it does not end in time)."""

    @abc.abstractmethod
    def kill(self) -> None:
        """End the worker now, whatever it is doing (a stop during a load). Never blocks."""

    @abc.abstractmethod
    def stream(self, operation: str, request: dict[str, Any], cancel: threading.Event) -> AsyncIterator[Chunk]:
        """Async iterator of the worker's `stream` chunks. When the consumer leaves early, is
        cancelled, or `cancel` is set, the worker is told to stop within one token."""

    @abc.abstractmethod
    async def embed(self, request: dict[str, Any]) -> Embeddings:
        """The worker's `embed`."""

    @abc.abstractmethod
    async def stats(self) -> dict[str, Any]:
        """The worker's `stats()`; answered at once, even while a stream runs."""

    @abc.abstractmethod
    async def memory(self) -> ProcessMemory | None:
        """RSS/USS of the worker's process now and its baseline before the model loaded (None: not
        started). Asked where the worker runs, so it works off this machine too."""

    def memory_target(self) -> ProcessTarget | None:
        """The worker's process for the live sampler, when it is on this machine (else None)."""
        return None

    def baseline(self) -> MemoryReading | None:
        """The worker's memory before its model loaded (None until known), without waiting: the app
        shows model memory as the sampled RSS minus this."""
        return None

    def describe(self) -> dict[str, Any]:
        """Where the worker is: `{"kind": ..., "pid": ..., "node": ...}` (pid/node None until started)."""
        return {"kind": self.kind, "pid": None, "node": None}


# ----- placements by name -------------------------------------------------------------------------
_PLACEMENTS: dict[str, str] = {
    "thread": "workbench.runtimes.placement.thread:ThreadPlacement",
    "process": "workbench.runtimes.placement.process:ProcessPlacement",
    "ray": "workbench.runtimes.placement.ray:RayPlacement",  # needs the `ray` extra
}

LIBRARY_PLACEMENT = "thread"
"""Default when an actor is built as a library object (fast unit tests, notebooks)."""
COMMAND_PLACEMENT = "process"
"""Default for the app, `workbench bench`, `run` and `serve`: each model in its own process."""


def register_placement(name: str, dotted_path: str) -> None:
    """Make `name` choosable (`--placement NAME`); `dotted_path` is `"module:Class"`, imported only
    when used (so e.g. `ray` need not be installed unless `ray` placement is chosen)."""
    _PLACEMENTS[name] = dotted_path


def placement_names() -> list[str]:
    return sorted(_PLACEMENTS)


def placement_class(name: str) -> type[Placement]:
    try:
        dotted = _PLACEMENTS[name]
    except KeyError:
        raise WorkbenchError(f"unknown placement {name!r}; choose one of: {', '.join(placement_names())}") from None
    module_name, _, class_name = dotted.partition(":")
    found = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(found, type) and issubclass(found, Placement)):
        raise TypeError(f"{dotted} is not a Placement class")
    return found


def create_placement(name: str, spec: WorkerSpec, **options: Any) -> Placement:
    """Build the placement `name` for one worker; `options` go to its constructor."""
    return placement_class(name)(spec, **options)
