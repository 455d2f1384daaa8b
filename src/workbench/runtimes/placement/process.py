"""`process` placement: each model in a child process of its own.

Why: the memory graph then shows each model's own process (RSS/USS of *its* pid, and what the
model added over the worker's baseline), a crash in a native kernel takes down one worker and not
the app, torch's process-wide settings (threads) are per worker, and a load can be killed at once.

How:
- The child is started with multiprocessing's `spawn` (a fresh interpreter; never a shell, never
  fork of a threaded app) and runs `worker_main`: it builds the `ModelWorker` named by the
  `WorkerSpec`, reports its baseline memory, loads with progress, then serves commands one at a
  time on its one thread. Between two tokens it polls the pipe: a cancel sets the running
  request's flag (it stops at its next token), stats are answered. No threads hand work to each
  other on either side, because each hand-off is a scheduler wake-up on a busy machine.
- Messages are the pydantic models of `wire.py`, JSON over a duplex `multiprocessing` pipe. In the
  app the event loop reads the pipe itself when it is readable (`add_reader`; the child writes each
  message in one piece); only reaping a dead child happens on a short-lived thread.
- Faults: the pipe's end of file (the child died) → `WorkerDied` ("worker process for torch:smollm2
  died: signal 9") on whatever was waiting, so the actor turns FAILED and its supervisor restarts
  it; a malformed message → the worker is killed and the same error names what it sent; no message
  for `hang_timeout_s` during a request → killed as hung.
- No orphans: the child exits when the pipe closes (the app ended, even by `kill -9`) or when its
  parent pid changes (checked every second, in case it is stuck in native code when the pipe
  closes); `daemon=True` makes multiprocessing end it when the app exits normally.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from typing import Any

from workbench.metrics.memory import MemoryReading, ProcessMemory, node_name, read_memory
from workbench.metrics.sampler import ProcessTarget
from workbench.paths import cache_dir
from workbench.runtimes.placement import wire
from workbench.runtimes.placement.base import (
    ModelWorker,
    Placement,
    ProgressCallback,
    WorkerDied,
    WorkerSpec,
    load_worker_class,
)
from workbench.runtimes.types import Chunk, Embeddings

_DEATH = object()  # posted to every waiting queue when the worker is gone
_CONTROL = 0  # queue id for start-up messages (progress, started, ready, a load failure)


class ProcessPlacement(Placement):
    """Options: `hang_timeout_s` (a request with no message for this long kills the worker, default
    300), `load_timeout_s` (the same between load progress messages, default 900),
    `stop_timeout_s` (how long `stop` waits for a clean exit before killing, default 5)."""

    kind = "process"
    interruptible = True

    def __init__(
        self,
        spec: WorkerSpec,
        *,
        hang_timeout_s: float = 300.0,
        load_timeout_s: float = 900.0,
        stop_timeout_s: float = 5.0,
        **options: Any,
    ) -> None:
        super().__init__(spec, **options)
        self.hang_timeout_s = hang_timeout_s
        self.load_timeout_s = load_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.pid: int | None = None
        self._baseline: MemoryReading | None = None
        self.load_time_s: float | None = None
        self.start_to_ready_s: float | None = None
        self._process: Any = None  # multiprocessing.Process (spawn context)
        self._conn: Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: dict[int, asyncio.Queue[Any]] = {}
        self._ids = itertools.count(1)
        self._death: WorkerDied | None = None
        self._killed_on_purpose = False
        self._send_lock = threading.Lock()

    # ----- lifecycle ------------------------------------------------------------------------------------
    async def start(self, progress: ProgressCallback) -> None:
        started = time.perf_counter()
        self._loop = asyncio.get_running_loop()
        control: asyncio.Queue[Any] = asyncio.Queue()
        self._queues[_CONTROL] = control
        context = multiprocessing.get_context("spawn")
        output = _worker_output_path(self.spec.name)
        _start_resource_tracker()
        parent_end, child_end = context.Pipe(duplex=True)
        process = context.Process(
            target=worker_main,
            args=(child_end, self.spec.model_dump_json(), os.getpid(), output),
            name=f"workbench worker {self.spec.name}",
            daemon=True,
        )
        self._conn = parent_end
        await asyncio.to_thread(process.start)
        child_end.close()
        self._process = process
        self.pid = process.pid
        if self._killed_on_purpose:  # stopped while the process was being created
            self._kill_now()
        self._loop.add_reader(parent_end.fileno(), self._on_readable)
        try:
            while True:
                message = await self._next(control, self.load_timeout_s, "loading")
                if isinstance(message, wire.Progress):
                    progress(message.fraction, message.what)
                elif isinstance(message, wire.Started):
                    self._baseline = message.baseline
                elif isinstance(message, wire.Ready):
                    self.load_time_s = message.load_time_s
                    self.start_to_ready_s = time.perf_counter() - started
                    return
                elif isinstance(message, wire.Failure):
                    raise wire.rebuild_error(message)
        except BaseException:
            self._kill_now()
            raise
        finally:
            self._queues.pop(_CONTROL, None)

    async def stop(self) -> None:
        process = self._process
        if process is None:
            return
        self._killed_on_purpose = True
        if process.is_alive() and self._death is None:
            with contextlib.suppress(OSError, ValueError, WorkerDied):
                self._send(wire.ShutdownCommand())
            await asyncio.to_thread(process.join, self.stop_timeout_s)
        if process.is_alive():
            self._kill_now()
        await asyncio.to_thread(process.join, 2.0)  # reaped: no zombie left behind
        self._close_conn()

    def kill(self) -> None:
        self._killed_on_purpose = True
        self._kill_now()

    def _kill_now(self) -> None:
        process = self._process
        if process is not None and process.is_alive():
            with contextlib.suppress(ProcessLookupError, OSError):
                process.kill()

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(OSError, ValueError):
                    self._loop.remove_reader(conn.fileno())
            with contextlib.suppress(OSError):
                conn.close()

    # ----- requests -------------------------------------------------------------------------------------
    async def stream(self, operation: str, request: dict[str, Any], cancel: Any) -> AsyncIterator[Chunk]:
        request_id, replies = self._open()
        finished = cancel_sent = False
        try:
            self._send(wire.StreamCommand(id=request_id, operation=operation, request=request))  # type: ignore[arg-type]
            while True:
                if cancel.is_set() and not cancel_sent:
                    self._send(wire.CancelCommand(id=request_id))
                    cancel_sent = True
                message = await self._next(replies, self.hang_timeout_s, "answering")
                if isinstance(message, wire.ChunkMessage):
                    yield message.chunk
                elif isinstance(message, wire.End):
                    finished = True
                    return
                elif isinstance(message, wire.Failure):
                    finished = True
                    raise wire.rebuild_error(message)
        finally:
            self._queues.pop(request_id, None)
            if not finished and not cancel_sent and self._death is None:
                # The consumer left or was cancelled: the worker stops within one token; whatever it
                # still sends for this id is dropped, and it takes the next request only after.
                with contextlib.suppress(OSError, ValueError, WorkerDied):
                    self._send(wire.CancelCommand(id=request_id))

    async def embed(self, request: dict[str, Any]) -> Embeddings:
        message = await self._ask(wire.EmbedCommand(id=0, request=request))
        if not isinstance(message, wire.EmbedResult):
            raise WorkerDied(f"worker process for {self.spec.name} answered embed with {message.kind}")
        return message.embeddings

    async def stats(self) -> dict[str, Any]:
        if self.load_time_s is None:  # still loading: the child reads nothing until it is ready
            return {"details": {"loading": True}}
        message = await self._ask(wire.StatsCommand(id=0))
        if not isinstance(message, wire.StatsResult):
            raise WorkerDied(f"worker process for {self.spec.name} answered stats with {message.kind}")
        return message.stats | ({"load_time_s": self.load_time_s} if "load_time_s" not in message.stats else {})

    async def memory(self) -> ProcessMemory | None:
        if self.pid is None:
            return None
        try:
            now: MemoryReading | None = read_memory(self.pid)
        except Exception:  # noqa: BLE001 - psutil.NoSuchProcess: the worker is gone; report the baseline
            now = None
        return ProcessMemory(
            pid=self.pid, node=node_name(), placement=self.kind,
            rss_bytes=now.rss_bytes if now else None, uss_bytes=now.uss_bytes if now else None,
            baseline_rss_bytes=self._baseline.rss_bytes if self._baseline else None,
            baseline_uss_bytes=self._baseline.uss_bytes if self._baseline else None,
        )

    def memory_target(self) -> ProcessTarget | None:
        if self.pid is None or self._death is not None:
            return None
        return ProcessTarget(self.pid, label=f"{self.spec.name} worker")

    def baseline(self) -> MemoryReading | None:
        return self._baseline

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "pid": self.pid, "node": node_name() if self.pid else None}

    # ----- plumbing -------------------------------------------------------------------------------------
    def _open(self) -> tuple[int, asyncio.Queue[Any]]:
        if self._death is not None:
            raise self._death
        request_id = next(self._ids)
        replies: asyncio.Queue[Any] = asyncio.Queue()
        self._queues[request_id] = replies
        return request_id, replies

    async def _ask(self, command: wire.EmbedCommand | wire.StatsCommand) -> Any:
        request_id, replies = self._open()
        try:
            self._send(command.model_copy(update={"id": request_id}))
            message = await self._next(replies, self.hang_timeout_s, "answering")
            if isinstance(message, wire.Failure):
                raise wire.rebuild_error(message)
            return message
        finally:
            self._queues.pop(request_id, None)

    def _send(self, message: wire._Message) -> None:
        conn = self._conn
        if conn is None or self._death is not None:
            raise self._death or WorkerDied(f"worker process for {self.spec.name} is not running")
        try:
            with self._send_lock:
                conn.send_bytes(wire.encode(message))
        except (OSError, ValueError) as error:
            raise WorkerDied(f"worker process for {self.spec.name} is gone ({error})") from None

    async def _next(self, replies: asyncio.Queue[Any], timeout_s: float, doing: str) -> Any:
        try:
            if replies.empty():
                async with asyncio.timeout(timeout_s):  # no task per token, unlike wait_for
                    message = await replies.get()
            else:
                message = replies.get_nowait()
        except TimeoutError:
            self._die(f"hung: no message for {timeout_s:g} s while {doing}; killed")
            self._kill_now()
            raise self._death from None  # type: ignore[misc]
        if message is _DEATH:
            raise self._death  # type: ignore[misc]
        return message

    def _on_readable(self) -> None:
        """The loop reads the child's messages itself when the pipe is readable: no reader thread to
        wake (each wake-up costs latency on a busy machine). The child writes every small message in
        one piece, so a read never waits on a half-written one for long."""
        conn = self._conn
        if conn is None:
            return
        try:
            while conn.poll():
                data = conn.recv_bytes(wire.MAX_MESSAGE_BYTES)
                self._deliver(wire.decode_from_worker(data))
                if self._conn is not conn:  # a message made us close it
                    return
        except (EOFError, OSError):
            self._lost(None)
        except wire.WireError as error:
            self._kill_now()
            self._lost(f"sent a malformed message ({error}); killed")

    def _lost(self, problem: str | None) -> None:
        """The pipe ended: stop reading, reap the child off the loop, then report its death."""
        self._close_conn()
        process, loop = self._process, self._loop
        assert loop is not None

        def reap() -> None:
            if process is not None:
                process.join(5.0)
            described = problem or f"died: {_describe_exit(process.exitcode if process is not None else None)}"
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
                loop.call_soon_threadsafe(self._die, described)

        threading.Thread(target=reap, name=f"wb-reap {self.spec.name}", daemon=True).start()

    def _deliver(self, message: Any) -> None:
        request_id = getattr(message, "id", None)
        replies = self._queues.get(_CONTROL if request_id is None else request_id)
        if replies is not None:
            replies.put_nowait(message)

    def _die(self, problem: str) -> None:
        first = self._death is None
        if first:
            if self._killed_on_purpose:
                problem = "was stopped"
            self._death = WorkerDied(f"worker process for {self.spec.name} {problem}")
        for replies in self._queues.values():
            replies.put_nowait(_DEATH)
        self._close_conn()
        if first and not self._killed_on_purpose and self.on_death is not None:
            self.on_death(self._death)  # type: ignore[arg-type]


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "its connection closed"
    if code < 0:
        return f"signal {-code}" + (f" ({signal.Signals(-code).name})" if -code in signal.Signals._value2member_map_ else "")
    return f"exit code {code}"


# ----- the child --------------------------------------------------------------------------------------
def _has_real_stderr() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.fileno() >= 0
    except (AttributeError, OSError, ValueError):
        return False


def _worker_output_path(name: str) -> str | None:
    """Where the worker's stdout/stderr go: inherited when ours is a real file; else (inside the
    Textual app, whose capture object has no file descriptor and whose screen is the terminal) a
    log file per worker, so a library's warnings never write over the app's screen."""
    if _has_real_stderr():
        return None
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "worker"
    folder = cache_dir("logs")
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"worker-{safe}.log")


def _start_resource_tracker() -> None:
    """multiprocessing starts its resource tracker lazily and hands it `sys.stderr.fileno()`; inside
    the Textual app that is -1, and spawning fails with "bad value(s) in fds_to_keep". Start the
    tracker once with the real stderr (called on the event loop's thread, the only one that writes
    to the app's stderr capture, so the brief swap is not seen by anyone)."""
    if _has_real_stderr():
        return
    from multiprocessing import resource_tracker

    captured = sys.stderr
    sys.stderr = sys.__stderr__
    try:
        resource_tracker.ensure_running()
    finally:
        sys.stderr = captured


WORKER_LOG_MAX_BYTES = 1 << 20  # a worker log past this starts over when the next worker starts


def _redirect_output(path: str) -> None:
    """Point this process's fds 1 and 2 at `path` (appended, so an earlier worker's last words stay
    until the log passes WORKER_LOG_MAX_BYTES), so native code's output goes there too."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    with contextlib.suppress(OSError):
        if os.path.getsize(path) > WORKER_LOG_MAX_BYTES:
            flags |= os.O_TRUNC
    fd = os.open(path, flags, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def worker_main(conn: Connection, spec_json: str, parent_pid: int, output: str | None = None) -> None:
    """Entry point of the worker process (spawned; runs nothing but this)."""
    if output is not None:
        _redirect_output(output)
    _exit_when_orphaned(parent_pid)
    spec = WorkerSpec.model_validate_json(spec_json)
    threads = spec.options.get("threads")
    if threads:  # before torch is imported: its OpenMP pool takes the size once
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[variable] = str(threads)
    _WorkerLoop(conn, spec).run()


def _exit_when_orphaned(parent_pid: int) -> None:
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="wb-parent-watch", daemon=True).start()


class _WorkerLoop:
    """The child's main thread does everything: it loads, then takes commands one at a time; while a
    stream runs it looks at the pipe between tokens (a `poll`, no blocking) to take a cancel (the
    stream stops at its next token) or answer stats. No reader thread: every thread hand-off costs
    a scheduler wake-up, which is most of the latency a busy machine adds."""

    def __init__(self, conn: Connection, spec: WorkerSpec) -> None:
        self.conn = conn
        self.spec = spec
        self.worker: ModelWorker | None = None
        self.pending: collections.deque[Any] = collections.deque()  # commands that came during a stream
        self.cancelled: set[int] = set()  # cancels for streams that had not begun

    def send(self, message: wire._Message) -> None:
        try:
            self.conn.send_bytes(wire.encode(message))
        except OSError:  # the app is gone
            os._exit(0)

    def receive(self) -> Any:
        while True:
            try:
                return wire.decode_to_worker(self.conn.recv_bytes())
            except (EOFError, OSError):
                os._exit(0)  # the app closed the pipe or died: never outlive it
            except wire.WireError:
                continue  # the app sends only valid commands; ignore anything else

    def answer_stats(self, command: wire.StatsCommand) -> None:
        try:
            stats = self.worker.stats() if self.worker is not None else {}
            self.send(wire.StatsResult(id=command.id, stats=stats))
        except Exception as error:  # noqa: BLE001 - reported to the app
            self.send(wire.failure_from(error, command.id))

    def look_in(self, running: int, cancel: threading.Event) -> None:
        """Between two tokens: take what arrived without waiting."""
        while self.conn.poll():
            command = self.receive()
            if isinstance(command, wire.CancelCommand):
                if command.id == running:
                    cancel.set()
                else:
                    self.cancelled.add(command.id)
            elif isinstance(command, wire.StatsCommand):
                self.answer_stats(command)
            else:
                self.pending.append(command)

    def run(self) -> None:
        try:
            worker = load_worker_class(self.spec.factory)(self.spec)
            worker.import_libraries()
            self.send(wire.Started(pid=os.getpid(), baseline=read_memory()))
            started = time.perf_counter()
            worker.load(lambda fraction, what: self.send(wire.Progress(fraction=min(max(fraction, 0.0), 1.0), what=what)))
            self.worker = worker
            self.send(wire.Ready(load_time_s=time.perf_counter() - started))
        except BaseException as error:  # noqa: BLE001 - the load failed: tell the app, then end
            self.send(wire.failure_from(error, None))
            return
        while True:
            command = self.pending.popleft() if self.pending else self.receive()
            if isinstance(command, wire.ShutdownCommand):
                worker.unload()
                return
            if isinstance(command, wire.StreamCommand):
                self.serve_stream(worker, command)
            elif isinstance(command, wire.EmbedCommand):
                try:
                    self.send(wire.EmbedResult(id=command.id, embeddings=worker.embed(command.request)))
                except Exception as error:  # noqa: BLE001 - the request failed, the worker serves on
                    self.send(wire.failure_from(error, command.id))
            elif isinstance(command, wire.StatsCommand):
                self.answer_stats(command)
            elif isinstance(command, wire.CancelCommand):
                self.cancelled.add(command.id)  # its stream is still queued (or already over)

    def serve_stream(self, worker: ModelWorker, command: wire.StreamCommand) -> None:
        cancel = threading.Event()
        try:
            if command.id in self.cancelled:  # cancelled while it waited: never start it
                self.cancelled.discard(command.id)
            else:
                for chunk in worker.stream(command.operation, command.request, cancel):
                    self.send(wire.ChunkMessage(id=command.id, chunk=chunk))
                    self.look_in(command.id, cancel)
                    if cancel.is_set():
                        break
            self.send(wire.End(id=command.id))
        except Exception as error:  # noqa: BLE001 - the request failed, the worker serves on
            self.send(wire.failure_from(error, command.id))
