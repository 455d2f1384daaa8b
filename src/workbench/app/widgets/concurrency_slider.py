"""The global concurrency slider: sets `global_limit()` live, 1..8, and shows running/waiting counts.

Moving it calls `set_limit` at once, so queued work is admitted (or held) immediately. Keyboard:
left/right or -/+ step it, home/end jump to the ends; a click on the track sets it there.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.events import Click
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from workbench.actors.limit import ConcurrencyLimit, LimitSnapshot, global_limit
from workbench.app.widgets import css_beside

SLIDER_MIN = 1
SLIDER_MAX = 8
_LABEL = "concurrency "


class ConcurrencySlider(Widget, can_focus=True):
    DEFAULT_CSS = css_beside(__file__)
    BINDINGS = [
        Binding("left,minus", "step(-1)", "Fewer", id="slider.down"),
        Binding("right,plus,equals_sign", "step(1)", "More", id="slider.up"),
        Binding("home", "jump(1)", "Min", show=False, id="slider.min"),
        Binding("end", "jump(8)", "Max", show=False, id="slider.max"),
    ]

    value: reactive[int] = reactive(SLIDER_MIN)
    running: reactive[int] = reactive(0)
    waiting: reactive[int] = reactive(0)

    class Changed(Message):
        def __init__(self, value: int) -> None:
            super().__init__()
            self.value = value

    def __init__(self, limit: ConcurrencyLimit | None = None, *, id: str | None = "slider") -> None:
        super().__init__(id=id)
        self.limit = limit if limit is not None else global_limit()
        self.set_reactive(ConcurrencySlider.value, min(SLIDER_MAX, self.limit.limit))
        self._unsubscribe = None

    def on_mount(self) -> None:
        self._unsubscribe = self.limit.on_change(self._on_limit)
        self._on_limit(self.limit.snapshot())

    def on_unmount(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()

    def _on_limit(self, snapshot: LimitSnapshot) -> None:
        self.running = snapshot.running
        self.waiting = snapshot.waiting
        if snapshot.limit != self.value and SLIDER_MIN <= snapshot.limit <= SLIDER_MAX:
            self.set_reactive(ConcurrencySlider.value, snapshot.limit)
            self.refresh()

    def set_value(self, value: int) -> None:
        value = max(SLIDER_MIN, min(SLIDER_MAX, value))
        if value == self.value and value == self.limit.limit:
            return
        self.value = value
        self.limit.set_limit(value)
        self.post_message(self.Changed(value))

    def action_step(self, delta: int) -> None:
        self.set_value(self.value + delta)

    def action_jump(self, value: int) -> None:
        self.set_value(value)

    def on_click(self, event: Click) -> None:
        index = event.x - len(_LABEL)
        if 0 <= index < SLIDER_MAX * 2:
            self.set_value(SLIDER_MIN + index // 2)

    def render(self) -> str:
        track = "".join(
            ("●" if n == self.value else ("━" if n < self.value else "─")) + (" " if n < SLIDER_MAX else "")
            for n in range(SLIDER_MIN, SLIDER_MAX + 1)
        )
        return f"{_LABEL}{track}  {self.value}   running {self.running} · waiting {self.waiting}"
