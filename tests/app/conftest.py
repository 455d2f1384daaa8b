"""App tests run the real app (Pilot) on ScriptedActor panes: real actors, threads and streams,
answering in milliseconds. Settings go to a temporary config folder; the global limit is restored."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.scripted import ScriptedActor
from workbench.actors.limit import global_limit
from workbench.app.main import WorkbenchApp
from workbench.runtimes.base import ModelRuntimeActor


def scripted_factory(delay_s: float = 0.0) -> Callable[[str], ModelRuntimeActor]:
    """Specs `scripted:NAME` build ScriptedActors; anything else fails as an unknown runtime would."""

    def build(spec: str) -> ModelRuntimeActor:
        runtime, _, model = spec.partition(":")
        if runtime != "scripted":
            raise ImportError(f"No module named 'workbench.runtimes.{runtime}'")
        return ScriptedActor(model, delay_s=delay_s, name=spec)

    return build


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    return config


@pytest.fixture(autouse=True)
def restore_limit():
    limit = global_limit()
    before = limit.limit
    yield limit
    limit.set_limit(before)


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., WorkbenchApp]:
    def make(specs: tuple[str, ...] = ("scripted:a", "scripted:b"), *, delay_s: float = 0.0, **kwargs) -> WorkbenchApp:
        kwargs.setdefault("sample_interval_s", None)
        kwargs.setdefault("discover_ollama", False)
        return WorkbenchApp(list(specs), tmp_path / "sessions", actor_factory=scripted_factory(delay_s), **kwargs)

    return make


async def wait_until(pilot, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Let the app run until `condition` holds (a wait, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.02)
