"""What a benchmark ran on: the machine, the library versions, and each server's own version.

Numbers are only comparable between runs on the same machine and software, so every run records
them. Package versions are read from installed metadata (no `import torch` just to ask).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
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

    Asks, in order: the actor's own `server_version()` or `version()` if it has one, its stats'
    details (`server_version` / `version`), then, for an Ollama actor, `GET /api/version` at the
    server the actor talks to. Anything that fails or takes more than a few seconds gives None: a
    version is not worth a failed benchmark.
    """
    with contextlib.suppress(Exception):
        return await asyncio.wait_for(_ask(actor), SERVER_VERSION_TIMEOUT_S)
    return None


async def _ask(actor: ModelRuntimeActor) -> str | None:
    for name in ("server_version", "version"):
        own = getattr(actor, name, None)
        if callable(own):
            with contextlib.suppress(Exception):
                found = own()
                if inspect.isawaitable(found):
                    found = await found
                if found:
                    return str(found)
    with contextlib.suppress(Exception):
        details: dict[str, Any] = (await actor.stats()).details
        for key in ("server_version", "version"):
            if details.get(key):
                return str(details[key])
    url = _server_url(actor)
    if actor.runtime.startswith("ollama") and url:
        async with httpx.AsyncClient(base_url=url, timeout=SERVER_VERSION_TIMEOUT_S) as client:
            answer = (await client.get("/api/version")).json()
        if isinstance(answer, dict) and answer.get("version"):
            return str(answer["version"])
    return None


def _server_url(actor: ModelRuntimeActor) -> str | None:
    """Where an actor's server answers: its `base_url`, or its local server's connect URL (Ollama CLI)."""
    url = getattr(actor, "base_url", None)
    if not url:
        host = getattr(getattr(actor, "server_process", None), "host", None)
        url = getattr(host, "connect_url", None)
    return str(url) if url else None
