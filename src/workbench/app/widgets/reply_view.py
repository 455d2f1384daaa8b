"""One turn in a chat pane: the prompt, the streamed answer (Markdown), its thinking, its figures.

Chunks arrive far faster than Markdown can re-render, so text is buffered and every streaming reply
on screen is flushed together, at most `MAX_RENDERS_PER_S` times a second: one layout pass per
tick however many panes stream (on 2 cores a full layout costs tens of milliseconds, and per-pane
timers would queue several per frame and delay key presses). The stream never waits for rendering.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Collapsible, Markdown, Static

from workbench.app.widgets import css_beside
from workbench.metrics.request import RequestMetrics

MAX_RENDERS_PER_S = 10.0
_dirty: set[ReplyView] = set()
_flush_pending = False


def describe_metrics(metrics: RequestMetrics | None) -> str:
    """The figures shown under a reply and in a pane's header."""
    return metrics.describe() if metrics is not None else ""


class ReplyView(Vertical):
    DEFAULT_CSS = css_beside(__file__)

    def __init__(self, prompt: str, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="streaming")
        self.prompt = prompt
        self.text = ""
        self.thinking = ""
        self._rendered_text = ""
        self._rendered_thinking = ""
        self.finished = False
        self.outcome = "streaming"
        self._figures = "…"

    def compose(self) -> ComposeResult:
        yield Static(self.prompt, classes="prompt", markup=False)
        with Collapsible(title="thinking", collapsed=True, classes="thinking"):
            yield Markdown(classes="thinking-text")
        yield Markdown(classes="answer")
        yield Static(self._figures, classes="figures", markup=False)

    def on_mount(self) -> None:
        """Deltas or an end that came before the widget was mounted are shown now."""
        self.render_now()

    def feed(self, text: str = "", thinking: str = "") -> None:
        """Add streamed deltas; the screen catches up within 1/MAX_RENDERS_PER_S seconds."""
        global _flush_pending
        self.text += text
        self.thinking += thinking
        _dirty.add(self)
        if not _flush_pending:
            _flush_pending = True
            self.app.set_timer(1.0 / MAX_RENDERS_PER_S, _flush_all)

    def render_now(self) -> None:
        _dirty.discard(self)
        if not self.children:  # not composed yet: on_mount renders what came
            return
        # Markdown.append re-parses only the document's last block, so long answers stay cheap.
        if self.thinking != self._rendered_thinking:
            delta = self.thinking[len(self._rendered_thinking):]
            self._rendered_thinking = self.thinking
            self.query_one(".thinking", Collapsible).add_class("shown")
            self.query_one(".thinking-text", Markdown).append(delta)
        if self.text != self._rendered_text:
            delta = self.text[len(self._rendered_text):]
            self._rendered_text = self.text
            self.query_one(".answer", Markdown).append(delta)
        self.query_one(".figures", Static).update(self._figures)

    def finish(self, figures: str, *, outcome: str = "done") -> None:
        """The reply ended (`done`, `error` or `cancelled`): show the rest and the figures."""
        self.finished = True
        self.outcome = outcome
        self._figures = figures
        self.remove_class("streaming")
        self.add_class(outcome)
        self.render_now()

    @property
    def figures(self) -> str:
        return self._figures


def _flush_all() -> None:
    global _flush_pending
    _flush_pending = False
    for view in list(_dirty):
        view.render_now()
