"""A small dialog that saves the running session under a name."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from workbench.errors import SessionFileError
from workbench.sessions.recorder import SessionRecorder


class SaveDialog(ModalScreen[str | None]):
    DEFAULT_CSS = """
    SaveDialog { align: center middle; }
    SaveDialog > Vertical { width: 60; height: auto; border: round $primary; background: $surface; padding: 0 1; }
    SaveDialog .problem { color: $text-error; }
    """
    BINDINGS = [Binding("escape", "close", "Cancel", id="save.cancel")]

    def __init__(self, recorder: SessionRecorder) -> None:
        super().__init__()
        self.recorder = recorder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Save session as (Enter to save, Esc to cancel):")
            yield Input(value=self.recorder.name, placeholder="name", id="session-name")
            yield Static("", classes="problem", markup=False)

    @on(Input.Submitted)
    def save(self, event: Input.Submitted) -> None:
        name = event.value.strip()
        problem = self.query_one(".problem", Static)
        if not name:
            problem.update("give the session a name")
            return
        try:
            path = self.recorder.save(name)
        except (SessionFileError, OSError) as error:
            problem.update(str(error))
            return
        self.notify(f"saved {path}")
        self.dismiss(str(path))

    def action_close(self) -> None:
        self.dismiss(None)
