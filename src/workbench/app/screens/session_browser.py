"""The session browser: saved sessions (date, panes, turns), unreadable files with their error, and
keys to play one back or re-run it."""

from __future__ import annotations

import math
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from workbench.errors import SessionFileError
from workbench.sessions.store import SessionSummary, list_sessions, load_session


class SessionBrowser(Screen[None]):
    DEFAULT_CSS = """
    SessionBrowser > Vertical { padding: 0 1; }
    SessionBrowser DataTable { height: auto; max-height: 1fr; }
    SessionBrowser #problems { color: $text-error; height: auto; }
    SessionBrowser .title { text-style: bold; }
    """
    BINDINGS = [
        Binding("enter,p", "play(1)", "Play 1x", id="sessions.play"),
        Binding("4", "play(4)", "Play 4x", id="sessions.play4"),
        Binding("i", "play(0)", "Instant", id="sessions.instant"),
        Binding("r", "rerun(False)", "Re-run (same actors)", id="sessions.rerun"),
        Binding("a", "rerun(True)", "Re-run (open panes)", id="sessions.rerun_open"),
        Binding("f5", "reload", "Reload", id="sessions.reload"),
        Binding("escape", "close", "Back", id="sessions.close"),
    ]

    def __init__(self, folder: Path, *, hide: Path | None = None) -> None:
        """`hide`: the running session's own journal, which is not a session to open yet."""
        super().__init__()
        self.folder = Path(folder)
        self.hide = hide
        self.summaries: list[SessionSummary] = []
        self.problems: list[SessionFileError] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Sessions in {self.folder}", classes="title", markup=False)
            yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
            yield Static("", id="problems", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#sessions", DataTable)
        table.add_columns("name", "date", "panes", "turns", "kind")
        self.action_reload()
        table.focus()

    def action_reload(self) -> None:
        summaries, self.problems = list_sessions(self.folder)
        self.summaries = [summary for summary in summaries if summary.path != self.hide]
        table = self.query_one("#sessions", DataTable)
        table.clear()
        for summary in self.summaries:
            table.add_row(summary.name, f"{summary.created_at:%Y-%m-%d %H:%M}", ", ".join(summary.panes),
                          str(summary.turns), "unsaved journal" if summary.journal else "saved",
                          key=str(summary.path))
        if not self.summaries:
            table.add_row("(no sessions yet: ctrl+s saves the running one)", "", "", "", "", key="")
        lines = [f"cannot read {error}" for error in self.problems]
        self.query_one("#problems", Static).update("\n".join(lines))

    def selected_path(self) -> Path | None:
        table = self.query_one("#sessions", DataTable)
        if not self.summaries or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return Path(key) if key else None

    def _load(self):  # noqa: ANN202 - ChatSession | None
        path = self.selected_path()
        if path is None:
            return None
        try:
            return load_session(path)
        except SessionFileError as error:
            self.notify(str(error), severity="error")
            return None

    def action_play(self, speed: float) -> None:
        from workbench.app.screens.playback import PlaybackScreen

        session = self._load()
        if session is not None:
            self.app.push_screen(PlaybackScreen(session, speed=speed or math.inf))

    def action_rerun(self, use_open_panes: bool) -> None:
        from workbench.app.screens.rerun import RerunScreen

        session = self._load()
        if session is not None:
            self.app.push_screen(RerunScreen(session, use_open_panes=use_open_panes))

    def action_close(self) -> None:
        self.app.pop_screen()
