"""The one prompt box: Enter sends to the selected pane, ctrl+t (alt+enter) to every pane; ctrl+r /
alt+r give the text (or a file, written `@PATH`) as context instead.

The keys are the box's own bindings, not the app's priority bindings they once were: a terminal
delivers keys in bursts, and an app-level binding ran before the box had inserted the characters
typed just ahead of it, so ctrl+t sent half a prompt. The box handles its keys in order."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input

from workbench.app.widgets import css_beside
from workbench.files import NO_SUCH_FILE, read_bounded


class PromptBox(Input):
    DEFAULT_CSS = css_beside(__file__)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+t,alt+enter", "send(True)", "Send to all", id="prompt.send_all"),
        Binding("ctrl+r", "read(False)", "As context", id="prompt.read", show=False),
        Binding("alt+r", "read(True)", "Context to all", id="prompt.read_all", show=False),
    ]

    class Send(Message):
        """The user asked to send `text` to the selected pane, or to every pane (`to_all`); with
        `as_context`, to be read as context rather than answered."""

        def __init__(self, text: str, to_all: bool, as_context: bool = False) -> None:
            super().__init__()
            self.text = text
            self.to_all = to_all
            self.as_context = as_context

    def __init__(self, *, id: str | None = "prompt") -> None:
        super().__init__(placeholder="Ask something… (Enter: this pane · ctrl+t: all panes · "
                                     "ctrl+r / alt+r: as context, @FILE attaches a file)", id=id)

    def take(self, to_all: bool, as_context: bool = False) -> bool:
        """Post the box's text as a Send and clear it; False when there is nothing to send."""
        text = self.value.strip()
        if not text:
            return False
        self.value = ""
        self.post_message(self.Send(text, to_all, as_context))
        return True

    async def action_submit(self) -> None:
        self.take(to_all=False)

    def action_send(self, to_all: bool) -> None:
        self.take(to_all=to_all)

    def action_read(self, to_all: bool) -> None:
        self.take(to_all=to_all, as_context=True)


MAX_ATTACHMENT_BYTES = 1024 * 1024


def attachment_text(text: str) -> str:
    """Context text as typed, or for `@PATH` the text of that file (UTF-8, at most 1 MiB); ValueError
    names the problem (no such file, too large, not text)."""
    if not text.startswith("@") or len(text) < 2:
        return text
    path = Path(text[1:]).expanduser()
    data = read_bounded(path, MAX_ATTACHMENT_BYTES, _attachment_refused)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None


def _attachment_refused(path: Path, problem: str) -> ValueError:
    if problem == NO_SUCH_FILE:
        return ValueError(f"no file {str(path)!r} to attach")
    return ValueError(f"cannot attach {path}: {problem}")
