"""A table of every pane's actor: state, queue, requests, errors, restarts and memory."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import DataTable

from workbench.app.graph_data import GraphData
from workbench.app.widgets import css_beside
from workbench.app.widgets.chat_pane import ChatPane

COLUMNS = ("pane", "actor", "state", "queued", "requests", "errors", "restarts", "memory", "last error")


class ActorStatusTable(DataTable):
    DEFAULT_CSS = css_beside(__file__)

    def __init__(self, *, id: str | None = "actor-status") -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)

    def show(self, panes: Sequence[ChatPane], graphs: GraphData) -> None:
        """Refill the rows, keeping the cursor on the same row."""
        row = self.cursor_row
        self.clear()
        for pane in panes:
            self.add_row(*self.row_for(pane, graphs), key=pane.id)
        if panes:
            self.move_cursor(row=min(max(row, 0), len(panes) - 1))

    @staticmethod
    def row_for(pane: ChatPane, graphs: GraphData) -> tuple[str, ...]:
        actor = pane.actor
        memory = graphs.memory.get(pane.title)
        mib = f"{memory[-1][1]:.0f} MiB" if memory else "-"
        if actor is None:
            return (pane.title, pane.slot.spec, "unavailable", "-", "-", "-", "-", mib, pane.slot.error[:60])
        error = str(actor.last_error or "")[:60]
        return (pane.title, actor.name, pane.state_text()[:30], str(actor.queued), str(actor.requests),
                str(actor.errors), str(actor.restarts), mib, error)

    @property
    def selected_key(self) -> str | None:
        if self.row_count == 0:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
