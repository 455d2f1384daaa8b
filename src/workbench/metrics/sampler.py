"""Live memory and CPU of the process that really holds each actor's model.

That is our own process for in-process runtimes, a child process for CLI runtimes, and a local
server's process tree for Ollama. Samples go into bounded time series that the app plots and the
benchmarks summarise. A sample reads a few /proc files per process; finding a tree's members
means scanning every process on the machine, so that is done only every `tree_refresh_s`. Sampling
at 2 Hz costs a small fraction of one core (see `benchmarks/sampler_cost.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil


@dataclass(frozen=True, slots=True)
class ProcessTarget:
    """A process to watch; with `include_children`, its whole tree (a server and its model runners)."""

    pid: int
    include_children: bool = False
    label: str = ""

    @classmethod
    def this_process(cls) -> ProcessTarget:
        return cls(os.getpid(), label="workbench process")


TargetSource = ProcessTarget | Callable[[], "ProcessTarget | ResourceSample | None"]
"""A process to read, or a callable giving one, or giving a sample read elsewhere (a model on another
machine reports its own process: see the `ray` placement), which is recorded as it is."""


@dataclass(frozen=True, slots=True)
class ResourceSample:
    t: float  # wall-clock seconds (time.time())
    rss_bytes: int
    cpu_percent: float  # of one core; can exceed 100 on several cores
    processes: int = 1


class TimeSeries:
    """A bounded series of samples: the oldest fall off once `capacity` is reached."""

    def __init__(self, capacity: int = 600) -> None:
        self._samples: deque[ResourceSample] = deque(maxlen=capacity)

    def append(self, sample: ResourceSample) -> None:
        self._samples.append(sample)

    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterator[ResourceSample]:
        return iter(list(self._samples))

    @property
    def capacity(self) -> int:
        return self._samples.maxlen or 0

    @property
    def latest(self) -> ResourceSample | None:
        return self._samples[-1] if self._samples else None

    def peak_rss(self) -> int | None:
        return max((s.rss_bytes for s in self._samples), default=None)

    def mean_rss(self) -> float | None:
        return sum(s.rss_bytes for s in self._samples) / len(self._samples) if self._samples else None

    def since(self, t: float) -> list[ResourceSample]:
        return [s for s in self._samples if s.t >= t]


class ResourceSampler:
    """Samples every watched target at `interval_s` into `series[key]`.

    Processes that share a pid (several in-process actors) are read once per tick.
    """

    def __init__(self, interval_s: float = 0.5, capacity: int = 600, *, tree_refresh_s: float = 2.0) -> None:
        if interval_s <= 0:
            raise ValueError("sampling interval must be positive")
        self.interval_s = interval_s
        self.capacity = capacity
        # Finding a tree's members scans every process on the machine (most of a tick's cost), so
        # membership is refreshed this often, and at once when a member is found gone.
        self.tree_refresh_s = tree_refresh_s
        self._trees: dict[int, tuple[float, list[int]]] = {}
        self.series: dict[str, TimeSeries] = {}
        self._targets: dict[str, TargetSource] = {}
        self._processes: dict[int, psutil.Process] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, key: str, target: TargetSource) -> TimeSeries:
        self._targets[key] = target
        return self.series.setdefault(key, TimeSeries(self.capacity))

    def unwatch(self, key: str) -> None:
        self._targets.pop(key, None)

    def sample_once(self) -> dict[str, ResourceSample]:
        now = time.time()
        readings: dict[tuple[int, bool], ResourceSample | None] = {}
        taken: dict[str, ResourceSample] = {}
        for key, source in list(self._targets.items()):
            target = source() if callable(source) else source
            if target is None:
                continue
            if isinstance(target, ResourceSample):  # read where the process runs
                self.series.setdefault(key, TimeSeries(self.capacity)).append(target)
                taken[key] = target
                continue
            slot = (target.pid, target.include_children)
            if slot not in readings:
                readings[slot] = self._read(target, now)
            sample = readings[slot]
            if sample is not None:
                self.series.setdefault(key, TimeSeries(self.capacity)).append(sample)
                taken[key] = sample
        return taken

    def _process(self, pid: int) -> psutil.Process:
        process = self._processes.get(pid)
        if process is None:
            process = psutil.Process(pid)
            process.cpu_percent(None)  # primes the CPU counter; the first real reading comes next tick
            self._processes[pid] = process
        return process

    def _read(self, target: ProcessTarget, now: float) -> ResourceSample | None:
        try:
            root = self._process(target.pid)
            members = [root]
            if target.include_children:
                for pid in self._descendants(root):
                    try:
                        members.append(self._process(pid))
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        self._trees.pop(target.pid, None)
            rss = 0
            cpu = 0.0
            alive = 0
            for member in members:
                try:
                    with member.oneshot():
                        if member.status() == psutil.STATUS_ZOMBIE:
                            continue  # exited, not yet reaped: it holds nothing
                        rss += member.memory_info().rss
                        cpu += member.cpu_percent(None)
                    alive += 1
                except psutil.NoSuchProcess:
                    self._processes.pop(member.pid, None)  # gone: forget it (its pid may be reused)
                    self._trees.pop(target.pid, None)
                except psutil.AccessDenied:
                    pass
            return ResourceSample(now, rss, cpu, alive) if alive else None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            self._processes.pop(target.pid, None)
            self._trees.pop(target.pid, None)
            return None

    def _descendants(self, root: psutil.Process) -> list[int]:
        now = time.monotonic()
        cached = self._trees.get(root.pid)
        if cached is not None and now - cached[0] < self.tree_refresh_s:
            return cached[1]
        pids = [child.pid for child in root.children(recursive=True)]
        self._trees[root.pid] = (now, pids)
        return pids

    # ----- running in the background --------------------------------------------------------------
    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="resource-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        next_tick = time.monotonic()
        while True:
            self.sample_once()
            next_tick += self.interval_s
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
