"""The one prompt box: Enter sends to the selected pane; the app's send-to-all binding sends to every pane."""

from __future__ import annotations

from textual.message import Message
from textual.widgets import Input

from workbench.app.widgets import css_beside


class PromptBox(Input):
    DEFAULT_CSS = css_beside(__file__)

    class Send(Message):
        """The user asked to send `text` to the selected pane, or to every pane (`to_all`)."""

        def __init__(self, text: str, to_all: bool) -> None:
            super().__init__()
            self.text = text
            self.to_all = to_all

    def __init__(self, *, id: str | None = "prompt") -> None:
        super().__init__(placeholder="Ask something… (Enter: this pane · ctrl+t: all panes)", id=id)

    def take(self, to_all: bool) -> bool:
        """Post the box's text as a Send and clear it; False when there is nothing to send."""
        text = self.value.strip()
        if not text:
            return False
        self.value = ""
        self.post_message(self.Send(text, to_all))
        return True

    async def action_submit(self) -> None:
        self.take(to_all=False)
