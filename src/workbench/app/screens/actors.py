"""The actor status view: all actors at a glance, with stop, restart and cancel on the selected row."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from workbench.app.widgets.actor_status import ActorStatusTable
from workbench.app.widgets.chat_pane import ChatPane

if TYPE_CHECKING:
    from workbench.app.main import WorkbenchApp


class ActorsScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    ActorsScreen { align: center middle; }
    ActorsScreen > Vertical { width: 90%; height: auto; max-height: 80%; border: round $primary;
                              background: $surface; padding: 0 1; }
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
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_table()
        self.set_interval(0.5, self.refresh_table)

    def refresh_table(self) -> None:
        self.query_one(ActorStatusTable).show(self.workbench.panes, self.workbench.graph_data)

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
