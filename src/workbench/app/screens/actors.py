"""The actor status view: all actors at a glance, with stop, restart and cancel on the selected row,
and below it the selected actor's recent messages: their input and the full text they streamed
(kept by the app's `StreamLog`, bounded)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from workbench.app.widgets.actor_status import ActorStatusTable
from workbench.app.widgets.chat_pane import ChatPane
from workbench.metrics.streamlog import format_record

RECENT_SHOWN = 5

if TYPE_CHECKING:
    from workbench.app.main import WorkbenchApp


class ActorsScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    ActorsScreen { align: center middle; }
    ActorsScreen > Vertical { width: 90%; height: auto; max-height: 90%; border: round $primary;
                              background: $surface; padding: 0 1; }
    ActorsScreen #streams { height: auto; max-height: 20; border-top: solid $primary-muted; }
    ActorsScreen #streams-text { color: $text; }
    """
    BINDINGS = [
        Binding("s", "stop", "Stop", id="actor.stop"),
        Binding("r", "restart", "Restart", id="actor.restart"),
        Binding("c", "cancel_requests", "Cancel requests", id="actor.cancel"),
        Binding("escape,f2", "dismiss", "Close", id="actors.close"),
    ]

    @property
    def workbench(self) -> WorkbenchApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Actors — s: stop · r: restart · c: cancel requests · esc: close", classes="title")
            yield ActorStatusTable()
            with VerticalScroll(id="streams"):
                yield Static("", id="streams-text", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self._shown: tuple[object, ...] = ()
        self.refresh_table()
        self.set_interval(0.5, self.refresh_table)

    def refresh_table(self) -> None:
        self.query_one(ActorStatusTable).show(self.workbench.panes, self.workbench.graph_data)
        self.refresh_streams()

    def refresh_streams(self) -> None:
        """The selected actor's last messages; redrawn only when one of them changed."""
        pane = self.selected()
        actor = pane.actor if pane is not None else None
        if actor is None:
            records = []
        else:
            records = self.workbench.stream_log.messages(actor.name, RECENT_SHOWN)
        shown = tuple((r.correlation_id, r.status, len(r.text), len(r.thinking)) for r in records)
        if (actor, shown) == self._shown:
            return
        self._shown = (actor, shown)
        if actor is None:
            text = ""
        elif not records:
            text = f"{actor.label}: no messages yet"
        else:
            text = f"{actor.label}: last {len(records)} message(s)\n\n" + "\n\n".join(map(format_record, records))
        self.query_one("#streams-text", Static).update(text)

    def on_data_table_row_highlighted(self) -> None:
        self.refresh_streams()

    def selected(self) -> ChatPane | None:
        key = self.query_one(ActorStatusTable).selected_key
        return next((pane for pane in self.workbench.panes if pane.id == key), None)

    async def action_stop(self) -> None:
        if (pane := self.selected()) is not None:
            await self.workbench.stop_actor(pane)
            self.notify(f"stopped {pane.slot.spec}")
            self.refresh_table()

    async def action_restart(self) -> None:
        if (pane := self.selected()) is not None:
            await self.workbench.restart_actor(pane)
            self.notify(f"restarting {pane.slot.spec}")
            self.refresh_table()

    def action_cancel_requests(self) -> None:
        if (pane := self.selected()) is not None:
            count = self.workbench.cancel_actor(pane)
            self.notify(f"cancelled {count} request(s) on {pane.slot.spec}")
            self.refresh_table()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
