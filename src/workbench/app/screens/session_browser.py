"""The session browser: saved sessions (date, panes, turns), unreadable files with their error, and
keys to play one back or re-run it.

Folders and files are read on a worker thread (a slow disk, a huge file or a hostile one never
freezes the app), and every string from a file is shown as plain text, never as markup.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

from rich.text import Text

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from workbench.app.screens.benchmark import plain
from workbench.errors import SessionFileError
from workbench.sessions.schema import ChatSession
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
        self.loaded = False  # the folder has been read (it is read off the UI thread)
        self.opening = False  # a session file is being read for play or re-run

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Sessions in {self.folder}", classes="title", markup=False)
            yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
            yield Static("", id="problems", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#sessions", DataTable)
        self.action_reload()
        table.focus()

    def action_reload(self) -> None:
        self.loaded = False
        self.run_worker(self._reload(), exclusive=True, group="sessions.reload")

    async def _reload(self) -> None:
        summaries, problems = await asyncio.to_thread(list_sessions, self.folder)
        self.problems = problems
        self.summaries = [summary for summary in summaries if summary.path != self.hide]
        table = self.query_one("#sessions", DataTable)
        # Columns and rows together, in one step: a header drawn before the rows came would keep
        # its narrow cached widths.
        table.clear(columns=True)
        table.add_columns("name", "date", "panes", "turns", "kind")
        for summary in self.summaries:
            table.add_row(plain(summary.name), f"{summary.created_at:%Y-%m-%d %H:%M}",
                          plain(", ".join(summary.panes)), str(summary.turns),
                          "unsaved journal" if summary.journal else "saved", key=str(summary.path))
        if not self.summaries:
            table.add_row("(no sessions yet: ctrl+s saves the running one)", "", "", "", "", key="")
        lines = [f"cannot read {error}" for error in self.problems]
        self.query_one("#problems", Static).update(Text("\n".join(lines)))
        self.loaded = True

    def selected_path(self) -> Path | None:
        table = self.query_one("#sessions", DataTable)
        if not self.summaries or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return Path(key) if key else None

    async def _load(self) -> ChatSession | None:
        """The selected session, read on a worker thread; None (with a notice) when it cannot be."""
        path = self.selected_path()
        if path is None or self.opening:
            return None
        self.opening = True
        try:
            return await asyncio.to_thread(load_session, path)
        except SessionFileError as error:
            self.notify(str(error), severity="error", markup=False)
            return None
        finally:
            self.opening = False

    async def action_play(self, speed: float) -> None:
        from workbench.app.screens.playback import PlaybackScreen

        session = await self._load()
        if session is not None and self.is_current:
            self.app.push_screen(PlaybackScreen(session, speed=speed or math.inf))

    async def action_rerun(self, use_open_panes: bool) -> None:
        from workbench.app.screens.rerun import RerunScreen

        session = await self._load()
        if session is not None and self.is_current:
            self.app.push_screen(RerunScreen(session, use_open_panes=use_open_panes))

    def action_close(self) -> None:
        self.app.pop_screen()
