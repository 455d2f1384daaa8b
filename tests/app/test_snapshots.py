"""Snapshot tests (pytest-textual-snapshot): the main screen, the session browser, the graphs panel.

Deterministic: fixed terminal size, ScriptedActor panes, fixed data, no clock; replies are shown
with fixed figures rather than measured ones.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from textual.app import App, ComposeResult

from tests.app.conftest import scripted_factory
from workbench.actors.actor import ActorState
from workbench.app.graph_data import GraphData
from workbench.app.main import WorkbenchApp
from workbench.app.screens.session_browser import SessionBrowser
from workbench.app.widgets.graphs import GraphsPanel
from workbench.metrics.request import RequestMetrics
from workbench.runtimes.types import ChatMessage
from workbench.sessions.schema import ChatSession, ChunkEvent, DoneEvent, PaneRecord, PromptEvent
from workbench.sessions.store import save_session

SIZE = (140, 40)


def test_main_screen(snap_compare, tmp_path, restore_limit):
    restore_limit.set_limit(2)
    app = WorkbenchApp(["scripted:a", "scripted:b"], tmp_path / "sessions", actor_factory=scripted_factory(),
                       discover_ollama=False, sample_interval_s=None, theme="workbench-dark")

    async def settle(pilot) -> None:
        while any(pane.actor.state != ActorState.IDLE for pane in app.panes):
            await pilot.pause(0.02)
        view = app.panes[0].add_reply_view("What is the capital of France?")
        view.feed("The capital of France is **Paris**.")
        view.finish("TTFT 0.12 s · 27.0 tok/s · 8 tokens · E2E 0.40 s")
        for pane in app.panes:
            pane.refresh_header()
        app.query_one("#prompt").cursor_blink = False  # a blinking cursor made the picture depend on the clock
        await app.workers.wait_for_complete()  # the reply's rendering, before the picture is taken
        await pilot.pause(0.1)
        await pilot.wait_for_scheduled_animations()

    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def _session(name: str, day: int) -> ChatSession:
    metrics = RequestMetrics(ttft_s=0.1, e2e_s=0.5, output_tokens=4)
    return ChatSession(
        id=f"s{day}", name=name, created_at=datetime(2025, 3, day, 9, 30, tzinfo=timezone.utc),
        panes=[PaneRecord(id="pane-1", spec="transformers:smollm2", title="1 transformers"),
               PaneRecord(id="pane-2", spec="torch:smollm2", title="2 torch")],
        events=[PromptEvent(t=0.0, pane="pane-1", correlation_id="c1", message=ChatMessage(role="user", content="hi")),
                ChunkEvent(t=0.1, pane="pane-1", correlation_id="c1", text="hello"),
                DoneEvent(t=0.5, pane="pane-1", correlation_id="c1", metrics=metrics)],
    )


class _BrowserApp(App[None]):
    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        self.push_screen(SessionBrowser(self.folder))


def test_session_browser(snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = Path("sessions")
    save_session(_session("capital cities", 1), folder / "capital-cities.json")
    save_session(_session("poems", 2), folder / "poems.json")
    (folder / "truncated.json").write_text('{"format": "workbench.session", "version": 1, "id"')
    app = _BrowserApp(folder)

    async def loaded(pilot) -> None:  # the folder is read on a worker thread: wait for it, then a repaint
        while not (isinstance(app.screen, SessionBrowser) and app.screen.loaded):
            await pilot.pause(0.02)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=loaded)


class _GraphsApp(App[None]):
    def __init__(self, data: GraphData) -> None:
        super().__init__()
        self.data = data

    def compose(self) -> ComposeResult:
        yield GraphsPanel(self.data, interval_s=60)

    def on_mount(self) -> None:
        self.theme = "textual-dark"


def test_graphs_panel(snap_compare):
    data = GraphData()
    for second in range(20):
        data.add_memory("1 transformers", second, (400 + 10 * second) * 2**20)
        data.add_memory("2 torch", second, (300 + 5 * second) * 2**20)
    for second in range(0, 20, 4):
        data.add_request("1 transformers", second, RequestMetrics(ttft_s=0.2 + second / 100, e2e_s=1.0, output_tokens=25))
        data.add_request("2 torch", second, RequestMetrics(ttft_s=0.3, e2e_s=1.25, output_tokens=25))
    assert snap_compare(_GraphsApp(data), terminal_size=(140, 20))
