"""Playing a saved session back as it happened: tokens at their recorded times (1x, 4x, instant),
the graphs redrawn from the recorded samples and metrics. Pure display: no actor runs."""

from __future__ import annotations

import math

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Static

from workbench.app.graph_data import GraphData
from workbench.app.slots import ActorSlot
from workbench.app.widgets.chat_pane import ChatPane
from workbench.app.widgets.graphs import GraphsPanel
from workbench.app.widgets.reply_view import ReplyView, describe_metrics
from workbench.sessions.playback import SessionPlayer
from workbench.sessions.schema import (
    CancelledEvent,
    ChatSession,
    ChunkEvent,
    DoneEvent,
    ErrorEvent,
    PaneEvent,
    PaneRecord,
    PromptEvent,
    SampleEvent,
)


def speed_label(speed: float) -> str:
    return "instant" if math.isinf(speed) else f"{speed:g}x"


class PlaybackScreen(Screen[None]):
    DEFAULT_CSS = """
    PlaybackScreen #playback-panes { height: 1fr; }
    PlaybackScreen #playback-status { height: 1; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("1", "speed(1)", "1x", id="playback.1x"),
        Binding("4", "speed(4)", "4x", id="playback.4x"),
        Binding("i", "speed(0)", "Instant", id="playback.instant"),
        Binding("space", "toggle_pause", "Pause", id="playback.pause"),
        Binding("escape", "close", "Back", id="playback.close"),
    ]

    def __init__(self, session: ChatSession, *, speed: float = 1.0) -> None:
        super().__init__()
        self.session = session
        self.player = SessionPlayer(session)
        self.speed = speed
        self.graph_data = GraphData()
        self.views: dict[str, ReplyView] = {}
        self.finished = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="playback-panes"):
            for record in self.session.panes:
                yield self._pane(record)
        yield GraphsPanel(self.graph_data, interval_s=0.5)
        yield Static("", id="playback-status", markup=False)
        yield Footer()

    @staticmethod
    def _pane(record: PaneRecord) -> ChatPane:
        return ChatPane(ActorSlot(record.id, record.spec, None), title=record.title or record.spec, read_only=True)

    def on_mount(self) -> None:
        self.play()
        self.set_interval(0.25, self.show_status)

    def show_status(self) -> None:
        state = "finished" if self.finished else ("paused" if self.player.paused else "playing")
        name = self.session.name or self.session.id
        self.query_one("#playback-status", Static).update(
            f"{name} · {state} {speed_label(self.player.speed)} · "
            f"{self.player.position:.1f} / {self.player.duration:.1f} s"
        )

    def pane(self, pane_id: str) -> ChatPane:
        return self.query_one(f"#{pane_id}", ChatPane)

    @work(exclusive=True, group="playback")
    async def play(self) -> None:
        async for event in self.player.play(self.speed):
            await self.apply(event)
        self.finished = True
        for view in self.views.values():
            view.render_now()
        self.query_one(GraphsPanel).redraw()
        self.show_status()

    async def apply(self, event: object) -> None:
        if isinstance(event, PaneEvent):
            if not self.query(f"#{event.record.id}"):
                await self.query_one("#playback-panes", Horizontal).mount(self._pane(event.record))
            return
        if isinstance(event, PromptEvent):
            text = event.message.text
            is_read = event.operation in ("read", "forget")
            shown = ("[context forgotten]" if event.operation == "forget" else
                     f"[context, {len(text)} characters]\n{text}" if is_read else text)
            view = self.pane(event.pane).add_reply_view(shown)
            view.set_class(is_read, "context")
            self.views[event.correlation_id or f"{event.pane}-{event.t}"] = view
            return
        view = self.views.get(event.correlation_id or "") if hasattr(event, "correlation_id") else None
        pane = self.pane(event.pane) if hasattr(event, "pane") else None
        if isinstance(event, SampleEvent) and pane is not None:
            self.graph_data.add_memory(pane.title, event.t, event.rss_bytes)
        elif view is None:
            return
        elif isinstance(event, ChunkEvent):
            view.feed(event.text, event.thinking)
        elif isinstance(event, DoneEvent):
            if view.has_class("context"):
                view.finish("context forgotten" if view.prompt == "[context forgotten]" else "read as context")
            else:
                view.finish(describe_metrics(event.metrics))
            if event.metrics is not None and pane is not None:
                pane.last_metrics = event.metrics
                pane.refresh_header()
                self.graph_data.add_request(pane.title, event.t, event.metrics)
        elif isinstance(event, ErrorEvent):
            view.finish(f"error: {event.error}", outcome="error")
        elif isinstance(event, CancelledEvent):
            view.finish("cancelled", outcome="cancelled")

    def action_speed(self, speed: float) -> None:
        self.player.set_speed(speed or math.inf)
        self.show_status()

    def action_toggle_pause(self) -> None:
        if self.player.paused:
            self.player.resume()
        else:
            self.player.pause()
        self.show_status()

    def action_close(self) -> None:
        self.player.cancel()
        self.app.pop_screen()
