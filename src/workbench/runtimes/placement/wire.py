"""The messages between an actor and its worker process, as pydantic models sent as JSON bytes.

JSON (not pickle) so that nothing the child sends can run code in the app, and every message is
validated on arrival: a child that sends garbage raises `WireError` naming what was wrong, which
the placement turns into a dead worker instead of a hang. One message per `send_bytes` over a
`multiprocessing` connection (length-prefixed by the connection itself).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from workbench.metrics.memory import MemoryReading
from workbench.runtimes.types import Chunk, Embeddings

MAX_MESSAGE_BYTES = 256 * 2**20  # a batch of embeddings is the largest thing that crosses


class WireError(Exception):
    """A message that is not valid JSON or not one of the messages below."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----- actor → worker ---------------------------------------------------------------------------------
class StreamCommand(_Message):
    kind: Literal["stream"] = "stream"
    id: int
    operation: Literal["generate", "chat"]
    request: dict[str, Any]


class EmbedCommand(_Message):
    kind: Literal["embed"] = "embed"
    id: int
    request: dict[str, Any]


class StatsCommand(_Message):
    kind: Literal["stats"] = "stats"
    id: int


class CancelCommand(_Message):
    kind: Literal["cancel"] = "cancel"
    id: int


class ShutdownCommand(_Message):
    kind: Literal["shutdown"] = "shutdown"


# ----- worker → actor ---------------------------------------------------------------------------------
class Started(_Message):
    """The worker is built (libraries imported) and about to load: its baseline memory."""

    kind: Literal["started"] = "started"
    pid: int
    baseline: MemoryReading


class Progress(_Message):
    kind: Literal["progress"] = "progress"
    fraction: float = Field(ge=0.0, le=1.0)
    what: str


class Ready(_Message):
    kind: Literal["ready"] = "ready"
    load_time_s: float


class ChunkMessage(_Message):
    kind: Literal["chunk"] = "chunk"
    id: int
    chunk: Chunk


class End(_Message):
    """The stream `id` is over (its last chunk was the `done` one, or it was cancelled before it began)."""

    kind: Literal["end"] = "end"
    id: int


class EmbedResult(_Message):
    kind: Literal["embeddings"] = "embeddings"
    id: int
    embeddings: Embeddings


class StatsResult(_Message):
    kind: Literal["stats-result"] = "stats-result"
    id: int
    stats: dict[str, Any]


class Failure(_Message):
    """Request `id` (None: the load) raised; the error's type is rebuilt on the actor side."""

    kind: Literal["failure"] = "failure"
    id: int | None = None
    error_type: str
    error_module: str
    message: str


ToWorker = Annotated[
    StreamCommand | EmbedCommand | StatsCommand | CancelCommand | ShutdownCommand, Field(discriminator="kind")
]
FromWorker = Annotated[
    Started | Progress | Ready | ChunkMessage | End | EmbedResult | StatsResult | Failure, Field(discriminator="kind")
]
_TO_WORKER: TypeAdapter[Any] = TypeAdapter(ToWorker)
_FROM_WORKER: TypeAdapter[Any] = TypeAdapter(FromWorker)


def encode(message: _Message) -> bytes:
    return message.model_dump_json().encode()


def decode_to_worker(data: bytes) -> Any:
    return _decode(_TO_WORKER, data)


def decode_from_worker(data: bytes) -> Any:
    return _decode(_FROM_WORKER, data)


def _decode(adapter: TypeAdapter[Any], data: bytes) -> Any:
    try:
        return adapter.validate_json(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "message"
        preview = data[:80].decode("utf-8", "replace")
        raise WireError(f"{where}: {first.get('msg', 'invalid')} (got {preview!r})") from None


def failure_from(error: BaseException, request_id: int | None) -> Failure:
    return Failure(
        id=request_id,
        error_type=type(error).__name__,
        error_module=type(error).__module__,
        message=str(error) or type(error).__name__,
    )


def rebuild_error(failure: Failure) -> Exception:
    """The worker's exception as the same type when it is a builtin or a workbench error (so callers
    catch what they would catch in process), else a RuntimeError naming the original type."""
    import builtins

    from workbench import errors

    found: Any = None
    if failure.error_module == "builtins":
        found = getattr(builtins, failure.error_type, None)
    elif failure.error_module == errors.__name__:
        found = getattr(errors, failure.error_type, None)
    if isinstance(found, type) and issubclass(found, Exception):
        error = found.__new__(found)
        Exception.__init__(error, failure.message)
        return error
    return RuntimeError(f"{failure.error_type}: {failure.message}")
