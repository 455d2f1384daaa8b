"""One turn in a chat pane: the prompt, the streamed answer (Markdown), its thinking, its figures.

Chunks arrive far faster than Markdown can re-render, so text is buffered and the Markdown is
updated at most `MAX_RENDERS_PER_S` times a second; the stream itself never waits for rendering.
"""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Collapsible, Markdown, Static

from workbench.app.widgets import css_beside
from workbench.metrics.request import RequestMetrics

MAX_RENDERS_PER_S = 15.0


def describe_metrics(metrics: RequestMetrics | None) -> str:
    """The figures shown under a reply and in a pane's header."""
    if metrics is None:
        return ""
    parts = []
    if metrics.ttft_s is not None:
        parts.append(f"TTFT {metrics.ttft_s:.2f} s")
    if metrics.output_tokens_per_s is not None:
        parts.append(f"{metrics.output_tokens_per_s:.1f} tok/s")
    if metrics.output_tokens is not None:
        parts.append(f"{metrics.output_tokens} tokens")
    parts.append(f"E2E {metrics.e2e_s:.2f} s")
    return " · ".join(parts)


class ReplyView(Vertical):
    DEFAULT_CSS = css_beside(__file__)

    def __init__(self, prompt: str, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="streaming")
        self.prompt = prompt
        self.text = ""
        self.thinking = ""
        self._rendered_text = ""
        self._rendered_thinking = ""
        self._last_render = 0.0
        self._timer_pending = False
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
        self.text += text
        self.thinking += thinking
        wait = 1.0 / MAX_RENDERS_PER_S - (time.monotonic() - self._last_render)
        if wait <= 0:
            self.render_now()
        elif not self._timer_pending:
            self._timer_pending = True
            self.set_timer(wait, self._render_from_timer)

    def _render_from_timer(self) -> None:
        self._timer_pending = False
        self.render_now()

    def render_now(self) -> None:
        self._last_render = time.monotonic()
        if not self.children:  # not composed yet: on_mount renders what came
            return
        if self.thinking != self._rendered_thinking:
            self._rendered_thinking = self.thinking
            self.query_one(".thinking", Collapsible).add_class("shown")
            self.query_one(".thinking-text", Markdown).update(self.thinking)
        if self.text != self._rendered_text:
            self._rendered_text = self.text
            self.query_one(".answer", Markdown).update(self.text)
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
