"""What a benchmark ran on: the machine, the library versions, and each server's own version.

Numbers are only comparable between runs on the same machine and software, so every run records
them. Package versions are read from installed metadata (no `import torch` just to ask).
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from workbench import __version__
from workbench.runtimes.base import ModelRuntimeActor
from workbench.sessions.schema import MachineInfo

VERSIONED_PACKAGES = ("torch", "transformers", "ollama", "httpx", "textual")
SERVER_VERSION_TIMEOUT_S = 5.0


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else what `platform` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    return platform.processor() or platform.machine()


def machine_info() -> MachineInfo:
    return MachineInfo(
        cpu=cpu_model(),
        cores_logical=psutil.cpu_count(logical=True) or 0,
        cores_physical=psutil.cpu_count(logical=False),
        memory_bytes=psutil.virtual_memory().total,
        os=f"{platform.system()} {platform.release()} ({platform.machine()})",
        python=platform.python_version(),
    )


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "workbench": __version__}
    for package in VERSIONED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions


async def server_version(actor: ModelRuntimeActor) -> str | None:
    """The version of the server behind an actor, when it has one (Ollama's `/api/version`).

    Asks, in order: the actor's own `server_version()` if it has one, its stats' details
    (`server_version` / `version`), then `/api/version` through a RESTful Ollama actor's client.
    Anything that fails or takes longer than a few seconds gives None: a version is not worth a
    failed benchmark.
    """
    with contextlib.suppress(Exception):
        return await asyncio.wait_for(_ask(actor), SERVER_VERSION_TIMEOUT_S)
    return None


async def _ask(actor: ModelRuntimeActor) -> str | None:
    own = getattr(actor, "server_version", None)
    if callable(own):
        with contextlib.suppress(Exception):
            found = own()
            if asyncio.iscoroutine(found) or isinstance(found, asyncio.Future):
                found = await found
            if found:
                return str(found)
    with contextlib.suppress(Exception):
        details: dict[str, Any] = (await actor.stats()).details
        for key in ("server_version", "version"):
            if details.get(key):
                return str(details[key])
    if actor.runtime.startswith("ollama") and callable(getattr(actor, "request_json", None)):
        answer = await actor.request_json("GET", "/api/version")  # type: ignore[attr-defined]
        if isinstance(answer, dict) and answer.get("version"):
            return str(answer["version"])
    return None
