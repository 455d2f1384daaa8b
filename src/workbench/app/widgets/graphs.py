"""The graphs panel: memory (RSS of the process holding each pane's model) and latency per request.

Redraws run on a timer (`interval_s`, at most once a second by default) and only when the data
changed, so streaming panes never wait for plotting. Series colours come from the app's theme.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Horizontal
from textual_plotext import PlotextPlot

from workbench.app.graph_data import GraphData
from workbench.app.widgets import css_beside

_THEME_COLOURS = ("primary", "secondary", "accent", "success", "warning", "error")


class GraphsPanel(Horizontal):
    DEFAULT_CSS = css_beside(__file__)

    def __init__(self, data: GraphData, *, interval_s: float = 1.0, id: str | None = "graphs") -> None:
        super().__init__(id=id)
        self.data = data
        self.interval_s = interval_s
        self._drawn_version = -1
        self.redraws = 0

    def compose(self) -> ComposeResult:
        yield PlotextPlot(id="memory-plot")
        yield PlotextPlot(id="latency-plot")

    def on_mount(self) -> None:
        self.redraw()
        self.set_interval(self.interval_s, self.redraw_if_changed)
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.redraw())

    def series_colours(self) -> list[tuple[int, int, int]]:
        variables = self.app.theme_variables
        colours = []
        for name in _THEME_COLOURS:
            value = variables.get(name)
            if value:
                colours.append(Color.parse(value).rgb)
        return colours or [(80, 160, 220)]

    def redraw_if_changed(self) -> None:
        if self.data.version != self._drawn_version:
            self.redraw()

    def redraw(self) -> None:
        self._drawn_version = self.data.version
        self.redraws += 1
        colours = self.series_colours()
        self._draw_memory(colours)
        self._draw_latency(colours)

    def _draw_memory(self, colours: list[tuple[int, int, int]]) -> None:
        widget = self.query_one("#memory-plot", PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("memory (MiB RSS)")
        for index, (label, points) in enumerate(self.data.memory.items()):
            if points:
                xs, ys = zip(*points)
                plt.plot(list(xs), list(ys), label=label, color=colours[index % len(colours)], marker="braille")
        plt.xlabel("s")
        widget.refresh()

    def _draw_latency(self, colours: list[tuple[int, int, int]]) -> None:
        widget = self.query_one("#latency-plot", PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("TTFT (ms, left) · tokens/s (right, dotted)")
        for index, (label, points) in enumerate(self.data.latency.items()):
            colour = colours[index % len(colours)]
            ttft = [(p.t, p.ttft_s * 1000) for p in points if p.ttft_s is not None]
            rate = [(p.t, p.tokens_per_s) for p in points if p.tokens_per_s is not None]
            if ttft:
                xs, ys = zip(*ttft)
                plt.plot(list(xs), list(ys), label=f"{label} TTFT", color=colour, marker="hd")
            if rate:
                xs, ys = zip(*rate)
                plt.plot(list(xs), list(ys), label=f"{label} tok/s", color=colour, marker="dot", yside="right")
        plt.xlabel("s")
        widget.refresh()
