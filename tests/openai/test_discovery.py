"""Finding OpenAI-compatible servers: the app's panes for `WORKBENCH_OPENAI_URLS`, and
`workbench runtimes --host URL`."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
from textual.widgets import Static

from tests.app.conftest import wait_until
from tests.openai.support import ReplayServer
from tests.support.scripted import ScriptedActor
from workbench.app.discovery import openai_specs
from workbench.app.main import WorkbenchApp
from workbench.cli import main
from workbench.runtimes.base import ModelRuntimeActor
from workbench.runtimes.registry import create_actor


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_specs_for_each_listed_server(replay: ReplayServer) -> None:
    dead = _dead_port()
    specs, notice = await openai_specs(f"{replay.url}, 127.0.0.1:{dead}")
    assert specs == [f"openai:llamacpp@{replay.url}"]
    assert f"{replay.url}: opened llamacpp." in notice
    assert f"No OpenAI-compatible server answers at http://127.0.0.1:{dead}/v1" in notice
    assert await openai_specs("") == ([], "")


async def test_app_opens_panes_for_workbench_openai_urls(replay: ReplayServer, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_OPENAI_URLS", replay.url)
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{_dead_port()}")

    def factory(spec: str) -> ModelRuntimeActor:
        return ScriptedActor("a", name=spec) if spec.startswith("scripted:") else create_actor(spec)

    app = WorkbenchApp(["scripted:a"], tmp_path / "sessions", actor_factory=factory, sample_interval_s=None,
                       discover_ollama=True)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_until(pilot, lambda: len(app.panes) == 2)
        pane = app.panes[1]
        assert pane.actor is not None and pane.actor.spec == f"openai:llamacpp@{replay.url}"
        notice = app.query_one("#notice", Static)
        await wait_until(pilot, lambda: "opened llamacpp" in str(notice.render()))


async def test_runtimes_host_says_whether_an_openai_server_answers(replay: ReplayServer,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert await asyncio.to_thread(main, ["runtimes", "--host", replay.url, "--json"]) == 0
    reports = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert reports["openai"]["available"] and "answers at" in reports["openai"]["reason"]
    dead = _dead_port()
    assert await asyncio.to_thread(main, ["runtimes", "--host", f"http://127.0.0.1:{dead}", "--json"]) == 0
    reports = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert not reports["openai"]["available"]
    assert f"not reachable at http://127.0.0.1:{dead}/v1" in reports["openai"]["reason"]


async def test_actors_screen_names_an_actor_made_as_dash_by_the_model_it_resolved(replay: ReplayServer,
                                                                                 tmp_path: Path) -> None:
    from workbench.app.widgets.actor_status import ActorStatusTable

    app = WorkbenchApp([f"openai:-@{replay.url}"], tmp_path / "sessions", sample_interval_s=None)
    async with app.run_test(size=(160, 45)) as pilot:
        actor = app.panes[0].actor
        assert actor is not None
        await actor.wait_ready()
        await pilot.press("f2")
        await pilot.pause()
        row = app.screen.query_one(ActorStatusTable).get_row_at(0)
        assert row[1] == "openai:llamacpp"
        assert "openai:llamacpp" in str(app.screen.query_one("#streams-text", Static).render())
