"""Memory of the process that holds one actor's model: RSS, USS, and what the model itself added.

RSS counts every resident page of the process, shared libraries included; USS (psutil's
`memory_full_info().uss`) counts only the pages no other process shares, so it is what the process
would give back if it ended. A worker's *baseline* is read after its runtime's libraries are
imported and before the model loads, so `model_* = now − baseline` is the model's own cost.
For an actor whose model shares the app's process (`thread` placement) the figures are the whole
app's and `shared` says so: they cannot be told apart per actor there.
"""

from __future__ import annotations

import os
import socket

import psutil
from pydantic import BaseModel, ConfigDict


class MemoryReading(BaseModel):
    """One reading of a process's memory, in bytes."""

    model_config = ConfigDict(frozen=True)

    rss_bytes: int
    uss_bytes: int | None = None  # None where smaps cannot be read (another user's process)


class ProcessMemory(BaseModel):
    """Per-actor memory: where the model lives, its process's figures now, and its baseline."""

    pid: int
    node: str  # host name (a Ray node id for placements off this machine)
    placement: str = "process"  # "thread" | "process" | "ray" ...
    shared: bool = False  # True: the process is shared with the app and other actors
    rss_bytes: int | None = None
    uss_bytes: int | None = None
    baseline_rss_bytes: int | None = None
    baseline_uss_bytes: int | None = None

    @property
    def model_rss_bytes(self) -> int | None:
        """What loading the model added to RSS (None until both readings exist)."""
        if self.rss_bytes is None or self.baseline_rss_bytes is None:
            return None
        return self.rss_bytes - self.baseline_rss_bytes

    @property
    def model_uss_bytes(self) -> int | None:
        if self.uss_bytes is None or self.baseline_uss_bytes is None:
            return None
        return self.uss_bytes - self.baseline_uss_bytes

    def summary(self) -> dict[str, object]:
        """The figures as a flat dict (for `--json` and benchmark files), model figures included."""
        return self.model_dump() | {"model_rss_bytes": self.model_rss_bytes, "model_uss_bytes": self.model_uss_bytes}


def read_memory(pid: int | None = None) -> MemoryReading:
    """RSS and USS of `pid` (default: this process). Raises psutil.NoSuchProcess when it is gone."""
    process = psutil.Process(pid if pid is not None else os.getpid())
    try:
        full = process.memory_full_info()
        return MemoryReading(rss_bytes=full.rss, uss_bytes=full.uss)
    except psutil.AccessDenied:
        return MemoryReading(rss_bytes=process.memory_info().rss)


def node_name() -> str:
    """The label for this machine in memory figures."""
    return socket.gethostname()
