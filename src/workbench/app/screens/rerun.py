"""Re-running a saved session's prompts, each recorded answer beside its new one.

The engine is `workbench.sessions.rerun.rerun_session`; this screen only picks the actors (the ones
already open in the app when their spec matches, so a model is not loaded twice) and shows progress.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Static

from workbench.app.slots import ActorSlot, build_slot
from workbench.app.widgets.chat_pane import ChatPane
from workbench.app.widgets.reply_view import ReplyView, describe_metrics
from workbench.runtimes.base import ModelRuntimeActor
from workbench.sessions.playback import Turn, transcript
from workbench.sessions.rerun import RerunProgress, RerunResult, rerun_session
from workbench.sessions.schema import ChatSession

if TYPE_CHECKING:
    from workbench.app.main import WorkbenchApp


def turn_figures(turn: Turn) -> tuple[str, str]:
    """(figures line, outcome class) for a finished turn."""
    if turn.status == "done":
        return describe_metrics(turn.metrics), "done"
    if turn.status == "error":
        return f"error: {turn.error}", "error"
    return turn.status, "cancelled"


class RerunScreen(Screen[None]):
    DEFAULT_CSS = """
    RerunScreen #rerun-panes { height: 1fr; }
    RerunScreen #rerun-status { height: auto; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "close", "Back", id="rerun.close")]

    def __init__(self, session: ChatSession, *, use_open_panes: bool = False) -> None:
        super().__init__()
        self.session = session
        self.use_open_panes = use_open_panes
        self.views: dict[tuple[str, int], ReplyView] = {}
        self.result: RerunResult | None = None
        self.owned: list[ModelRuntimeActor] = []

    @property
    def workbench(self) -> WorkbenchApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Horizontal(id="rerun-panes"):
            for record in self.session.all_panes():
                yield ChatPane(ActorSlot(f"rec-{record.id}", record.spec, None),
                               title=f"recorded {record.title or record.spec}", read_only=True)
                yield ChatPane(ActorSlot(f"new-{record.id}", record.spec, None),
                               title=f"re-run {record.title or record.spec}", read_only=True)
        yield Static("re-running…", id="rerun-status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        for pane_id, turns in transcript(self.session).items():
            pane = self.query_one(f"#rec-{pane_id}", ChatPane)
            for turn in turns:
                view = pane.add_reply_view(turn.prompt.text)
                view.feed(turn.text, turn.thinking)
                figures, outcome = turn_figures(turn)
                view.finish(figures, outcome=outcome)
        self.run_rerun()

    def plan(self) -> dict[str, ModelRuntimeActor]:
        """An actor for each recorded pane: open ones where they fit, new ones otherwise."""
        open_actors = [pane.actor for pane in self.workbench.panes if pane.actor is not None]
        by_spec = {actor.spec: actor for actor in open_actors}
        plan: dict[str, ModelRuntimeActor] = {}
        for index, record in enumerate(self.session.all_panes()):
            if self.use_open_panes and open_actors:
                plan[record.id] = open_actors[index % len(open_actors)]
                continue
            if record.spec in by_spec:
                plan[record.id] = by_spec[record.spec]
                continue
            slot: ActorSlot = build_slot(record.spec, self.workbench.actor_factory)
            if slot.actor is None:
                raise RuntimeError(f"cannot re-run pane {record.title or record.id}: {slot.error}")
            self.owned.append(slot.actor)
            plan[record.id] = slot.actor
        return plan

    @work(exclusive=True, group="rerun")
    async def run_rerun(self) -> None:
        status = self.query_one("#rerun-status", Static)
        try:
            plan = self.plan()
            for pane_id, actor in plan.items():
                self.query_one(f"#new-{pane_id}", ChatPane).title = f"re-run on {actor.spec}"
            self.result = await rerun_session(self.session, plan, folder=self.workbench.sessions_dir,
                                              on_progress=self.progress)
        except Exception as error:  # noqa: BLE001 - shown on the screen
            status.update(f"re-run failed: {error}")
            return
        finally:
            for actor in self.owned:
                await actor.stop(drain=False)
        status.update(f"re-run finished · saved as {self.result.path}")

    def progress(self, event: RerunProgress) -> None:
        key = (event.pane, event.index)
        pane = self.query_one(f"#new-{event.pane}", ChatPane)
        if event.kind == "started" or key not in self.views:
            self.views[key] = pane.add_reply_view(event.recorded.prompt.text)
        view = self.views[key]
        if event.kind == "chunk":
            view.feed(event.text, event.thinking)
        elif event.kind == "finished" and event.turn is not None:
            figures, outcome = turn_figures(event.turn)
            view.finish(figures, outcome=outcome)
            if event.turn.metrics is not None:
                pane.last_metrics = event.turn.metrics
                pane.refresh_header()

    def action_close(self) -> None:
        self.workers.cancel_group(self, "rerun")
        self.app.pop_screen()
