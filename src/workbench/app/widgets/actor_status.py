"""A table of every pane's actor: state, queue, requests, errors, restarts, where its model runs and
its memory (RSS of that process, and for an in-process runtime what the model added over the worker's
baseline)."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import DataTable

from workbench.app.graph_data import GraphData, memory_label
from workbench.app.widgets import css_beside
from workbench.app.widgets.chat_pane import ChatPane
from workbench.metrics.sampler import ProcessTarget

COLUMNS = ("pane", "actor", "state", "queued", "requests", "errors", "restarts", "where", "memory", "model",
           "last error")


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
        if actor is None:
            return (pane.title, pane.slot.spec, "unavailable", "-", "-", "-", "-", "-", "-", "-", pane.slot.error[:60])
        target = actor.memory_target()
        memory = graphs.memory.get(memory_label(pane.title, target))
        mib = f"{memory[-1][1]:.0f} MiB" if memory else "-"
        error = str(actor.last_error or "")[:60]
        return (pane.title, actor.label, pane.state_text()[:30], str(actor.queued), str(actor.requests),
                str(actor.errors), str(actor.restarts), where(actor, target), mib, model_mib(actor, memory), error)

    @property
    def selected_key(self) -> str | None:
        if self.row_count == 0:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value


def where(actor: object, target: ProcessTarget | None) -> str:
    """"process 4242", "thread (app)", "server tree 77", "pid 99" (a CLI child), or "-"."""
    placement = getattr(actor, "placement", None)
    if placement is not None:
        described = placement.describe()
        if described.get("kind") == "thread":
            return "thread (app)"
        return f"{described.get('kind')} {described.get('pid') or '?'}"
    if target is None:
        return "-"
    return f"server tree {target.pid}" if target.include_children else f"pid {target.pid}"


def model_mib(actor: object, memory: Sequence[tuple[float, float]] | None) -> str:
    """The latest sampled RSS minus the worker's baseline before its model loaded ("-" when unknown;
    for thread placement it is the whole app's growth, so it is marked shared)."""
    placement = getattr(actor, "placement", None)
    baseline = placement.baseline() if placement is not None else None
    if baseline is None or not memory:
        return "-"
    added = memory[-1][1] - baseline.rss_bytes / 2**20
    return f"{added:.0f} MiB" + (" (shared)" if placement.kind == "thread" else "")
