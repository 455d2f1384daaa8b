"""`ray` placement: the model's worker runs as a Ray actor, on this machine or a Ray cluster.

The workbench actor (mailbox, concurrency limit, metrics, events) stays in the app; only the
`ModelWorker` moves into `RayWorkerHost`, a threaded Ray actor, so `cancel`, `stats` and `memory`
are answered while a stream runs. How it behaves:

- **Connecting** (`address=`, the CLI's `--ray ADDRESS`): `local` starts a private Ray instance of
  this process bound to 127.0.0.1 only (no dashboard); `auto` joins the cluster `ray start` made on
  this machine (or `RAY_ADDRESS`); `ray://host:10001` goes through Ray Client. One Ray connection
  per process (Ray's rule): a second, different address is an error naming both.
- **Resources**: each actor asks Ray for `num_cpus` (default: its thread count) and `num_gpus`
  (default 0), plus any custom `resources`. A request no live node can hold fails at once with the
  nodes' totals; one that fits but finds the cluster busy fails after `placement_timeout_s`.
- **Streaming**: a Ray streaming generator (`num_returns="streaming"`). An object per token costs
  milliseconds, so the host coalesces deltas: the first token goes out at once (TTFT), later ones
  at most every `coalesce_ms`; a slow model's tokens still go out one by one as they come.
- **Cancel**: a flag per stream on the host, set by the `cancel` method (the host runs several
  threads), which the worker checks every token; the placement then drains the stream to its end,
  so the next message never overlaps the last.
- **Memory and CPU**: the host reads its own process (psutil RSS/USS, CPU share) with its baseline
  before the model loaded, sends it with the stream about once a second and on request, labelled
  with its node; the live graphs read the pid on this machine, or these figures from elsewhere.
- **Faults**: a Ray actor that dies (killed, node lost) raises `WorkerDied` (an `ActorCrashed`):
  the request fails with Ray's reason, the actor turns FAILED and the supervisor restarts it, which
  makes a fresh Ray actor. One that hangs past its deadline is killed the same way. An exception
  raised by the worker itself fails only its request.

Ray is optional (`pip install -e '.[ray]'`); without it this placement says how to install it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import importlib.util
import os
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psutil
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workbench.errors import RuntimeUnavailable, WorkbenchError
from workbench.metrics.memory import ProcessMemory, node_name, read_memory
from workbench.metrics.sampler import ProcessTarget, ResourceSample
from workbench.runtimes.placement.base import (
    ModelWorker,
    Placement,
    ProgressCallback,
    WorkerDied,
    WorkerSpec,
    load_worker_class,
)
from workbench.runtimes.placement.thread import wait_uninterrupted
from workbench.runtimes.types import Chunk, Embeddings

INSTALL_HINT = "the ray placement needs Ray: pip install -e '.[ray]' (or pip install 'ray>=2.40')"
LOCAL = "local"
LOOPBACK = "127.0.0.1"
FIGURES_EVERY_S = 1.0  # how often a stream carries the host's memory figures
HOST_THREADS = 4  # the host's threads: one stream, plus cancel/stats/memory/unload answered meanwhile


class RayOptions(BaseModel):
    """What `placement_options` may hold for `ray` (a typo is an error, not silently ignored)."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = None  # None: RAY_ADDRESS if set, else "local"
    num_cpus: float | None = Field(default=None, ge=0)  # None: the worker's thread count
    num_gpus: float = Field(default=0, ge=0)
    resources: dict[str, float] = Field(default_factory=dict)  # Ray custom resources
    coalesce_ms: float = Field(default=25.0, ge=0)
    placement_timeout_s: float = Field(default=30.0, gt=0)  # a busy cluster: how long to wait for room
    stop_timeout_s: float = Field(default=10.0, gt=0)  # unload, and a cancelled stream's end
    hang_timeout_s: float = Field(default=300.0, gt=0)  # a stream with nothing new for this long: killed
    load_timeout_s: float = Field(default=900.0, gt=0)  # the same between a load's progress messages


def import_ray() -> Any:
    """`ray`, or `RuntimeUnavailable` saying how to install it."""
    try:
        import ray
    except ImportError as error:
        raise RuntimeUnavailable(f"{INSTALL_HINT} ({error})") from None
    return ray


_ADDRESS_FORM = re.compile(r"^(local|auto|(ray://)?[\w.\-\[\]:]+:\d+)$")
_default_address: str | None = None


def check_address(address: str) -> str:
    """`local`, `auto`, `ray://HOST:PORT` (Ray Client) or `HOST:PORT` (a cluster's GCS), else an error."""
    if not _ADDRESS_FORM.match(address):
        raise WorkbenchError(f"bad Ray address {address!r}: write local, auto, ray://HOST:10001 or HOST:6379")
    return address


def set_default_address(address: str | None) -> None:
    """The address `ray` placements use when their options name none (the CLI's `--ray`)."""
    global _default_address
    _default_address = check_address(address) if address is not None else None


def default_address() -> str:
    """`--ray`, else `RAY_ADDRESS` (Ray's own variable), else a private local instance."""
    return _default_address or os.environ.get("RAY_ADDRESS") or LOCAL


# ----- connecting ------------------------------------------------------------------------------------------
@dataclass
class RayConnection:
    """This process's Ray connection: what was asked for, and what starting it cost."""

    address: str
    started_local: bool
    connect_s: float
    nodes: list[str] = field(default_factory=list)


_connection: RayConnection | None = None
_connect_lock = threading.Lock()
# Ray ties the life of the processes it starts (GCS, raylet) to the *thread* that started them
# (Linux PR_SET_PDEATHSIG), so a `local` instance is started on a thread of its own that lives as
# long as this process: on an event loop's executor thread it would die with that loop.
_owner_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wb-ray-owner")


async def connect_async(address: str | None = None) -> RayConnection:
    """`connect` on the Ray owner thread; the event loop only awaits."""
    return await asyncio.wrap_future(_owner_thread.submit(connect, address))


def connect(address: str | None = None) -> RayConnection:
    """Connect this process to Ray (blocking: call it off the event loop). Idempotent per address."""
    global _connection
    ray = import_ray()
    wanted = check_address(address or default_address())
    with _connect_lock:
        if _connection is not None and ray.is_initialized():
            if wanted not in (_connection.address, "auto") and not (wanted == LOCAL and _connection.started_local):
                raise WorkbenchError(
                    f"this process is already connected to Ray at {_connection.address!r}; Ray allows one "
                    f"connection per process, so ask every ray placement for that address (not {wanted!r})"
                )
            return _connection
        started = time.perf_counter()
        if ray.is_initialized():  # someone else (a test fixture, a notebook) connected first: use theirs
            _connection = RayConnection(address="existing", started_local=False, connect_s=0.0)
        elif wanted == LOCAL:
            _init_local(ray)
            _connection = RayConnection(address=LOCAL, started_local=True, connect_s=time.perf_counter() - started)
        else:
            try:
                ray.init(address=wanted, log_to_driver=False, logging_level="ERROR")
            except Exception as error:  # Ray raises ConnectionError, RuntimeError, ValueError...
                raise RuntimeUnavailable(
                    f"cannot connect to Ray at {wanted!r}: {error} (is a cluster running there, and does this "
                    f"machine hold its auth token? https://docs.ray.io/en/latest/ray-security/token-auth.html)"
                ) from None
            _connection = RayConnection(address=wanted, started_local=False, connect_s=time.perf_counter() - started)
        _connection.nodes = [node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")]
        return _connection


def _init_local(ray: Any) -> None:
    """Start a private Ray instance bound to 127.0.0.1, never another address.

    Ray picks the machine's routable IP for its node even when told `127.0.0.1` unless its
    "single machine" switch is off (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, read when Ray is
    imported and by the processes it starts), so the switch is set around the start and the node
    address is checked after it: anything but loopback shuts Ray down again and is an error.
    """
    from ray._private import ray_constants

    variable = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    saved_env, saved_flag = os.environ.get(variable), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[variable] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(
            address=LOCAL,
            _node_ip_address=LOOPBACK,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            num_cpus=os.cpu_count() or 1,
            # Ray nices its workers (15) below the driver; a model there must compete on equal terms
            # with `process`-placed ones, or a busy machine starves it and comparisons lie.
            _system_config={"worker_niceness": 0},
        )
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = saved_env
    addresses = {node["NodeManagerAddress"] for node in ray.nodes()}
    if addresses != {LOOPBACK}:
        ray.shutdown()
        raise WorkbenchError(f"the local Ray instance bound to {sorted(addresses)}, not {LOOPBACK}; refusing to use it")


def disconnect() -> None:
    """Shut down this process's Ray connection (a `local` instance ends with it)."""
    global _connection
    with _connect_lock:
        if importlib.util.find_spec("ray") is not None:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        _connection = None
        _remote_host_class.cache_clear()  # an actor class belongs to the Ray session it was made in


def current_connection() -> RayConnection | None:
    return _connection


@dataclass(frozen=True, slots=True)
class RayStatus:
    """For `workbench runtimes`: is Ray importable, and does a cluster answer?"""

    installed: bool
    version: str | None
    cluster: str  # a sentence


def probe(address: str | None = None, timeout_s: float = 1.0) -> RayStatus:
    """Whether Ray is importable and a cluster answers at `address` (default: RAY_ADDRESS, or the
    cluster `ray start` made here), without starting or joining one: a TCP connect to its address."""
    if importlib.util.find_spec("ray") is None:
        return RayStatus(False, None, INSTALL_HINT)
    version = importlib.metadata.version("ray")
    if _connection is not None and address in (None, _connection.address):
        return RayStatus(True, version, f"connected ({_connection.address}, nodes {', '.join(_connection.nodes)})")
    wanted = address or os.environ.get("RAY_ADDRESS") or "auto"
    if wanted == LOCAL:
        return RayStatus(True, version, "a private local instance starts when a ray placement is used")
    target = wanted.removeprefix("ray://")
    if wanted == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address

            target = canonicalize_bootstrap_address("auto") or ""
        except Exception:  # Ray's own lookup failed: report "none found" below
            target = ""
        if not target:
            return RayStatus(True, version, "no running cluster found (RAY_ADDRESS unset, no `ray start` here); "
                                            "--ray local starts a private one")
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host or LOOPBACK, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as error:
        return RayStatus(True, version, f"no cluster answers at {wanted} ({error})")
    return RayStatus(True, version, f"a cluster answers at {wanted}")


# ----- the worker side: a Ray actor hosting a ModelWorker -------------------------------------------------
class HostFigures(ProcessMemory):
    """The host's own process, read where it runs: its memory figures, plus what only the host
    knows (the node's address, its CPU share)."""

    placement: str = "ray"
    rss_bytes: int
    node_ip: str
    cpu_percent: float | None = None  # of one core, since the previous reading

    def memory(self) -> ProcessMemory:
        """The per-actor memory figures alone (what stats, `run --json` and bench files carry)."""
        return ProcessMemory.model_validate(self.model_dump(include=set(ProcessMemory.model_fields)))


@dataclass(frozen=True, slots=True)
class StreamBatch:
    """One object of a stream: coalesced chunks, and now and then the host's figures. A plain
    dataclass (no validation): both ends run the same workbench code and Ray pickles it."""

    chunks: list[Chunk]
    figures: HostFigures | None = None


def coalesce(chunks: list[Chunk]) -> list[Chunk]:
    """Merge consecutive delta chunks into one (texts joined, token counts summed); done stays apart."""
    merged: list[Chunk] = []
    for chunk in chunks:
        last = merged[-1] if merged else None
        if last is not None and not last.done and not chunk.done and chunk.usage is None and last.usage is None:
            tokens = None if last.tokens is None or chunk.tokens is None else last.tokens + chunk.tokens
            merged[-1] = Chunk(text=last.text + chunk.text, thinking=last.thinking + chunk.thinking, tokens=tokens)
        else:
            merged.append(chunk)
    return merged


_ITEM, _ERROR, _END = "item", "error", "end"


class RayWorkerHost:
    """Runs in a Ray worker process (wrapped by `ray.remote` when a placement starts one).

    Plain blocking Python; Ray runs its methods on `HOST_THREADS` threads, one of them a stream.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = WorkerSpec.model_validate(spec)
        self.worker: ModelWorker | None = None
        self.baseline = None
        self._cancels: dict[str, threading.Event] = {}
        self._cancels_lock = threading.Lock()
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading only starts the clock

    def ping(self) -> str:
        return node_name()

    def load(self) -> Iterator[tuple[str, Any]]:
        """A streaming method: `("progress", (fraction, what))` items, then `("ready", HostFigures)`."""
        self.worker = load_worker_class(self.spec.factory)(self.spec)
        self.worker.import_libraries()  # they count in the baseline: "model memory" is the model's alone
        self.baseline = read_memory()
        items: queue.Queue[tuple[str, Any]] = queue.Queue()

        def run() -> None:
            try:
                assert self.worker is not None
                self.worker.load(lambda fraction, what: items.put((_ITEM, (fraction, what))))
            except BaseException as error:  # noqa: BLE001 - re-raised on the generator's thread
                items.put((_ERROR, error))
            finally:
                items.put((_END, None))

        threading.Thread(target=run, name="wb-ray-load", daemon=True).start()
        while True:
            kind, value = items.get()
            if kind == _END:
                break
            if kind == _ERROR:
                raise value
            yield ("progress", value)
        yield ("ready", self.figures())

    def stream(self, stream_id: str, operation: str, request: dict[str, Any], coalesce_ms: float) -> Iterator[StreamBatch]:
        """A streaming method: the worker's chunks, coalesced (first token at once, then at most every
        `coalesce_ms`), with the host's figures about once a second and on the last batch."""
        worker = self._require()
        cancel = self._cancel_flag(stream_id)
        items: queue.Queue[tuple[str, Any]] = queue.Queue()

        def produce() -> None:
            try:
                for chunk in worker.stream(operation, request, cancel):
                    items.put((_ITEM, chunk))
            except BaseException as error:  # noqa: BLE001 - re-raised on the generator's thread
                items.put((_ERROR, error))
            finally:
                items.put((_END, None))

        producer = threading.Thread(target=produce, name="wb-ray-stream", daemon=True)
        producer.start()
        window = coalesce_ms / 1000.0
        pending: list[Chunk] = []
        sent_token = False
        last_flush = last_figures = time.monotonic()
        try:
            while True:
                timeout = None if not pending else max(0.0, last_flush + window - time.monotonic())
                try:
                    kind, value = items.get(timeout=timeout)
                except queue.Empty:  # the window closed with deltas waiting: send them
                    kind, value = None, None
                if kind == _ERROR:
                    raise value
                if kind == _END:
                    if pending:
                        yield StreamBatch(chunks=coalesce(pending), figures=self.figures())
                    break
                if kind == _ITEM:
                    pending.append(value)
                    is_token = bool(value.text or value.thinking)
                    if not (value.done or (is_token and not sent_token)
                            or time.monotonic() - last_flush >= window):
                        continue
                    sent_token = sent_token or is_token
                if not pending:
                    continue
                now = time.monotonic()
                final = pending[-1].done
                figures = self.figures() if final or now - last_figures >= FIGURES_EVERY_S else None
                if figures is not None:
                    last_figures = now
                yield StreamBatch(chunks=coalesce(pending), figures=figures)
                pending, last_flush = [], time.monotonic()
        finally:  # ended, failed, or the consumer went away (generator closed): stop the worker
            cancel.set()
            producer.join()
            with self._cancels_lock:
                self._cancels.pop(stream_id, None)

    def cancel(self, stream_id: str) -> None:
        """Stop that stream within one token (a cancel that comes before its stream is kept for it)."""
        self._cancel_flag(stream_id).set()

    def embed(self, request: dict[str, Any]) -> Embeddings:
        return self._require().embed(request)

    def stats(self) -> dict[str, Any]:
        return self.worker.stats() if self.worker is not None else {}

    def figures(self) -> HostFigures:
        import ray

        now = read_memory()
        baseline = self.baseline
        return HostFigures(
            pid=os.getpid(), node=node_name(), node_ip=ray.util.get_node_ip_address(),
            rss_bytes=now.rss_bytes, uss_bytes=now.uss_bytes,
            baseline_rss_bytes=baseline.rss_bytes if baseline else None,
            baseline_uss_bytes=baseline.uss_bytes if baseline else None,
            cpu_percent=self._process.cpu_percent(None),
        )

    def unload(self) -> None:
        if self.worker is not None:
            self.worker.unload()

    def _require(self) -> ModelWorker:
        if self.worker is None:
            raise RuntimeError(f"worker for {self.spec.name} is not loaded")
        return self.worker

    def _cancel_flag(self, stream_id: str) -> threading.Event:
        with self._cancels_lock:
            return self._cancels.setdefault(stream_id, threading.Event())


# ----- the actor side ----------------------------------------------------------------------------------
class RayPlacement(Placement):
    """Options: see `RayOptions` (`address`, `num_cpus`, `num_gpus`, `resources`, `coalesce_ms`,
    `placement_timeout_s`, `load_timeout_s`, `hang_timeout_s`, `stop_timeout_s`)."""

    kind = "ray"
    interruptible = True  # ray.kill ends a load or a stream at once

    def __init__(self, spec: WorkerSpec, **options: Any) -> None:
        super().__init__(spec, **options)
        try:
            self.settings = RayOptions.model_validate(options)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in error.errors())
            raise WorkbenchError(f"bad ray placement options for {spec.name}: {problems} "
                                 f"(valid: {', '.join(RayOptions.model_fields)})") from None
        self.handle: Any = None
        self.figures: HostFigures | None = None
        self.connection: RayConnection | None = None
        self.start_s: float | None = None  # create → ready (scheduling, worker process, model load)
        self._death: WorkerDied | None = None  # set when this placement killed a hung host
        self._figures_asked = 0.0  # monotonic time the sampler last asked a remote host for figures
        self._refresh: asyncio.Future[Any] | None = None

    # ----- resources ------------------------------------------------------------------------------------
    def requirements(self) -> dict[str, float]:
        """What this actor asks Ray for."""
        threads = self.spec.options.get("threads") or os.cpu_count() or 1
        cpus = self.settings.num_cpus if self.settings.num_cpus is not None else float(threads)
        wanted = {"CPU": cpus, "GPU": self.settings.num_gpus, **self.settings.resources}
        return {name: amount for name, amount in wanted.items() if amount}

    def check_feasible(self, ray: Any) -> None:
        """Fail at once when no live node could ever hold this actor (Ray would wait forever)."""
        wanted = self.requirements()
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        if any(all(node["Resources"].get(name, 0) >= amount for name, amount in wanted.items()) for node in nodes):
            return
        shown = "; ".join(
            f"{node['NodeManagerAddress']}: " + ", ".join(f"{name} {node['Resources'].get(name, 0):g}" for name in wanted)
            for node in nodes
        ) or "none alive"
        raise RuntimeUnavailable(
            f"Ray cannot place {self.spec.name}: it needs {_show(wanted)} and no node has that "
            f"(nodes: {shown}); lower its threads/num_cpus/num_gpus or add a node that has them"
        )

    # ----- lifecycle ------------------------------------------------------------------------------------
    async def start(self, progress: ProgressCallback) -> None:
        ray = import_ray()
        progress(0.0, f"connecting to Ray ({self.settings.address or default_address()})")
        self.connection = await connect_async(self.settings.address)
        self.check_feasible(ray)
        started = time.perf_counter()
        wanted = self.requirements()
        host_class = _remote_host_class()
        self.handle = host_class.options(
            num_cpus=wanted.get("CPU", 0),
            num_gpus=wanted.get("GPU", 0),
            resources={name: amount for name, amount in wanted.items() if name not in ("CPU", "GPU")} or None,
            max_concurrency=HOST_THREADS,
            max_restarts=0,  # the workbench supervisor restarts, with its own policy and events
            name=None,
        ).remote(self.spec.model_dump(mode="json"))
        progress(0.0, f"waiting for Ray to place {self.spec.name} ({_show(wanted)})")
        try:
            await asyncio.wait_for(self.handle.ping.remote(), self.settings.placement_timeout_s)
        except TimeoutError:
            available = ray.available_resources()
            self.kill()
            raise RuntimeUnavailable(
                f"Ray did not place {self.spec.name} within {self.settings.placement_timeout_s:g} s: it needs "
                f"{_show(wanted)}, the cluster has {_show({n: available.get(n, 0) for n in wanted})} free now "
                f"(other actors hold the rest)"
            ) from None
        except Exception as error:
            raise self._translate(error) from None
        loading = self.handle.load.options(num_returns="streaming").remote().__aiter__()
        try:
            while True:
                try:
                    kind, value = await (await asyncio.wait_for(loading.__anext__(), self.settings.load_timeout_s))
                except StopAsyncIteration:
                    break
                if kind == "progress":
                    progress(*value)
                else:
                    self.figures = value
        except TimeoutError:
            raise self._die(f"hung: no load progress for {self.settings.load_timeout_s:g} s; killed") from None
        except Exception as error:
            raise self._translate(error) from None
        self.start_s = time.perf_counter() - started

    async def stop(self) -> None:
        handle = self.handle
        if handle is None:
            return
        with contextlib.suppress(Exception):  # a dead or hung host: killed below either way
            await asyncio.wait_for(handle.unload.remote(), self.settings.stop_timeout_s)
        self.kill()

    def kill(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            import ray

            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)

    # ----- requests -------------------------------------------------------------------------------------
    async def stream(self, operation: str, request: dict[str, Any], cancel: threading.Event) -> AsyncIterator[Chunk]:
        handle = self._require()
        stream_id = uuid.uuid4().hex
        generator = handle.stream.options(num_returns="streaming").remote(
            stream_id, operation, request, self.settings.coalesce_ms
        )
        refs = generator.__aiter__()
        watcher = asyncio.create_task(self._cancel_when_set(cancel, handle, stream_id))
        ended = False
        try:
            while True:
                try:
                    ref = await asyncio.wait_for(refs.__anext__(), self.settings.hang_timeout_s)
                except StopAsyncIteration:
                    ended = True
                    break
                except TimeoutError:
                    ended = True
                    raise self._die(f"hung: nothing for {self.settings.hang_timeout_s:g} s while answering; killed") from None
                batch: StreamBatch = await ref
                if batch.figures is not None:
                    self.figures = batch.figures
                for chunk in batch.chunks:
                    yield chunk
        except Exception as error:
            ended = True
            raise self._translate(error) from None
        finally:
            watcher.cancel()
            if not ended:  # cancelled or abandoned: stop the remote stream, then wait for its end
                handle.cancel.remote(stream_id)
                drained = asyncio.ensure_future(asyncio.wait_for(_drain(refs), self.settings.stop_timeout_s))
                try:
                    await wait_uninterrupted(drained)
                except TimeoutError:  # it did not stop: end it, so the next message cannot overlap it
                    self._die(f"hung: still answering {self.settings.stop_timeout_s:g} s after a cancel; killed")

    async def _cancel_when_set(self, cancel: threading.Event, handle: Any, stream_id: str) -> None:
        """The message's cancel flag is set from any thread: pass it on to the host."""
        while not cancel.is_set():
            await asyncio.sleep(0.01)
        handle.cancel.remote(stream_id)

    async def embed(self, request: dict[str, Any]) -> Embeddings:
        try:
            return await self._require().embed.remote(request)
        except Exception as error:
            raise self._translate(error) from None

    async def stats(self) -> dict[str, Any]:
        if self.handle is None:
            return {}
        try:
            return await self.handle.stats.remote()
        except Exception as error:
            raise self._translate(error) from None

    async def memory(self) -> ProcessMemory | None:
        if self.handle is not None:
            with contextlib.suppress(Exception):  # a dead host: its last figures, the error comes elsewhere
                self.figures = await asyncio.wait_for(self.handle.figures.remote(), 5.0)
        figures = self.figures
        if figures is None:
            return None
        return figures.memory()

    def memory_target(self) -> ProcessTarget | ResourceSample | None:  # type: ignore[override]
        """The host's process when it runs on this machine (the live sampler reads it directly).
        Off this machine, the host's own latest reading (it comes with each stream about once a
        second); while idle the figures are asked for again, at most once a second."""
        figures = self.figures
        if figures is None or self.handle is None:
            return None
        if figures.node == node_name():
            return ProcessTarget(figures.pid, label=f"ray actor {self.spec.name}")
        now = time.monotonic()
        if now - self._figures_asked >= FIGURES_EVERY_S and (self._refresh is None or self._refresh.done()):
            self._figures_asked = now
            self._refresh = asyncio.ensure_future(self.memory())
        return ResourceSample(time.time(), figures.rss_bytes, figures.cpu_percent or 0.0)

    def describe(self) -> dict[str, Any]:
        figures = self.figures
        connection = self.connection
        return {
            "kind": self.kind,
            "pid": figures.pid if figures else None,
            "node": figures.node if figures else None,
            "node_ip": figures.node_ip if figures else None,
            "cpu_percent": figures.cpu_percent if figures else None,
            "address": connection.address if connection else (self.settings.address or default_address()),
            "resources": self.requirements(),
            "ray_connect_s": connection.connect_s if connection else None,
            "start_s": self.start_s,
        }

    # ----- helpers -------------------------------------------------------------------------------------
    def _die(self, what: str) -> WorkerDied:
        """Kill the host; every later call raises the returned error (the actor turns FAILED)."""
        self._death = WorkerDied(f"ray actor for {self.spec.name} {what}")
        self.kill()
        return self._death

    def _require(self) -> Any:
        if self._death is not None:
            raise self._death
        if self.handle is None:
            raise RuntimeError(f"ray worker for {self.spec.name} is not started")
        return self.handle

    def _translate(self, error: BaseException) -> BaseException:
        """Ray's errors → ours: a dead actor is `WorkerDied`; a worker's own exception is itself."""
        from ray import exceptions

        if isinstance(error, exceptions.RayActorError):
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            reason = lines[-1] if lines else type(error).__name__
            return WorkerDied(f"ray actor for {self.spec.name} died: {reason}")
        if isinstance(error, exceptions.RayTaskError):
            cause = getattr(error, "cause", None)
            return cause if isinstance(cause, BaseException) else WorkbenchError(str(error))
        if isinstance(error, exceptions.RayError):  # objects lost with their node, the GCS gone: no host left
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            return WorkerDied(f"ray actor for {self.spec.name} lost: {type(error).__name__}: {first}")
        return error


@functools.cache
def _remote_host_class() -> Any:
    """`RayWorkerHost` as a Ray actor class (made once: Ray exports a class per `ray.remote`)."""
    return import_ray().remote(RayWorkerHost)


async def _drain(refs: Any) -> None:
    """Read a cancelled stream to its end (the host stops within one token), ignoring its errors."""
    with contextlib.suppress(Exception):
        async for _ in _remaining(refs):
            pass


async def _remaining(refs: Any) -> AsyncIterator[Any]:
    while True:
        try:
            yield await refs.__anext__()
        except StopAsyncIteration:
            return


def _show(resources: dict[str, float]) -> str:
    return "{" + ", ".join(f"{name}: {amount:g}" for name, amount in resources.items()) + "}"
