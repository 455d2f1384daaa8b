"""The benchmark screen: run the benchmark on the panes' actors with a progress bar, see the results
table and plots when it is done, and open saved runs.

The run is the same `BenchmarkRunner` the command line uses, in a worker on the app's loop (the
actors stream there; nothing blocks the UI). The panes' actors are used as they are and left
running; the runner raises the global concurrency limit to each level and puts it back after.

The results table has an accuracy column (right/scored, for prompts with an expectation) and, with
two or more actors, the agreement table shows each pair's identical-answer rate, mean first
divergence (characters) and similarity. Every cell is plain text: actor names, file names and
answers never go through Textual markup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, ProgressBar, Static

from workbench.app.widgets import css_beside
from workbench.bench.compare import AGREEMENT_HEADERS, COLUMNS_BY_KEY, SUMMARY_KEYS, agreement_cells, plots
from workbench.bench.prompts import load_prompts
from workbench.bench.runner import BenchmarkRunner, BenchProgress
from workbench.commands.bench import parse_levels
from workbench.errors import WorkbenchError
from workbench.runtimes.base import ModelRuntimeActor
from workbench.runtimes.types import GenerationOptions
from workbench.sessions.schema import BENCHMARK_FORMAT, BenchmarkConfig, BenchmarkPrompt, BenchmarkRun
from workbench.sessions.store import load_benchmark, peek_format, save_benchmark_or_fallback


def plain(value: object) -> Text:
    """A table cell shown as it is (a DataTable reads a bare string as markup)."""
    return Text(str(value), end="")


def saved_runs(folder: Path) -> list[Path]:
    """Benchmark files in `folder`, newest first (sessions live there too and are skipped)."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.json"):
        try:
            if peek_format(path) == BENCHMARK_FORMAT:
                found.append(path)
        except (OSError, WorkbenchError):  # unreadable, or not a regular file (a FIFO would hang)
            continue
    return sorted(found, key=lambda path: path.stat().st_mtime, reverse=True)


class BenchmarkScreen(Screen[None]):
    DEFAULT_CSS = css_beside(__file__)
    BINDINGS = [
        Binding("ctrl+r", "run", "Run", id="bench.run"),
        Binding("ctrl+x", "stop", "Stop", id="bench.stop"),
        Binding("ctrl+o", "open_selected", "Open run", id="bench.open"),
        Binding("f5", "reload", "Reload runs", id="bench.reload"),
        Binding("escape", "close", "Back", id="bench.close"),
    ]

    def __init__(
        self,
        actors: Sequence[ModelRuntimeActor],
        sessions_dir: Path,
        *,
        prompts: str = "short",
        concurrency: str = "1,2",
        max_tokens: int = 32,
        warmup: int = 1,
    ) -> None:
        super().__init__()
        self.actors = list(actors)
        self.sessions_dir = Path(sessions_dir)
        self.defaults = (prompts, concurrency, str(max_tokens), str(warmup))
        self.runner: BenchmarkRunner | None = None
        self.run_shown: BenchmarkRun | None = None
        self.saved_path: Path | None = None
        self.runs: list[Path] = []

    # ----- layout ---------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        prompts, concurrency, max_tokens, warmup = self.defaults
        with Vertical(id="bench-body"):
            names = ", ".join(actor.spec for actor in self.actors) or "no actors: open a pane first"
            yield Static(f"Benchmark: {names}", classes="title", markup=False)
            with Horizontal(id="bench-settings"):
                yield Label("prompts")
                yield Input(prompts, id="bench-prompts", placeholder="short | scored | long | embed | FILE.jsonl")
                yield Label("concurrency")
                yield Input(concurrency, id="bench-concurrency", placeholder="1,2,4")
                yield Label("max tokens")
                yield Input(max_tokens, id="bench-max-tokens", type="integer")
                yield Label("warm-up")
                yield Input(warmup, id="bench-warmup", type="integer")
                yield Button("Run", id="bench-run", variant="primary")
                yield Button("Stop", id="bench-stop", disabled=True)
            with Horizontal(id="bench-progress"):
                yield ProgressBar(id="bench-bar", show_eta=False)
                yield Static("", id="bench-status", markup=False)
            with VerticalScroll(id="bench-output"):
                yield DataTable(id="bench-results", zebra_stripes=True, cursor_type="row")
                yield Static("", id="bench-agreement-title", classes="title", markup=False)
                yield DataTable(id="bench-agreement", zebra_stripes=True, cursor_type="row")
                yield Static("", id="bench-plots", markup=False)
            yield Static("Saved runs (select one and press ctrl+o)", classes="title", markup=False)
            yield DataTable(id="bench-runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        results = self.query_one("#bench-results", DataTable)
        results.add_columns("actor", "conc", "req", "err", *(COLUMNS_BY_KEY[key].short for key in SUMMARY_KEYS))
        agreement = self.query_one("#bench-agreement", DataTable)
        agreement.add_columns(*AGREEMENT_HEADERS)
        agreement.display = False
        self.query_one("#bench-runs", DataTable).add_columns("file", "date", "actors", "levels")
        self.action_reload()

    # ----- running --------------------------------------------------------------------------------------
    def config(self) -> tuple[BenchmarkConfig, list[BenchmarkPrompt]]:
        """The config from the settings row; raises WorkbenchError (or ValueError) naming what is wrong."""
        prompts_name = self.query_one("#bench-prompts", Input).value.strip() or "short"
        prompts = load_prompts(prompts_name)
        levels = parse_levels(self.query_one("#bench-concurrency", Input).value)
        max_tokens = int(self.query_one("#bench-max-tokens", Input).value or 32)
        warmup = int(self.query_one("#bench-warmup", Input).value or 0)
        op = "embed" if prompts_name == "embed" else "chat"
        config = BenchmarkConfig(
            actors=[actor.spec for actor in self.actors], op=op, prompts=prompts_name, concurrency=levels,
            max_tokens=None if op == "embed" else max_tokens, warmup=warmup,
            options=GenerationOptions(temperature=0.0) if op == "chat" else GenerationOptions(),
        )
        return config, prompts

    @on(Button.Pressed, "#bench-run")
    def action_run(self) -> None:
        if self.runner is not None:
            self.notify("a benchmark is already running", severity="warning")
            return
        if not self.actors:
            self.notify("no actors to benchmark: open a pane first", severity="error")
            return
        try:
            config, prompts = self.config()
            runner = BenchmarkRunner(config, prompts=prompts, actors=self.actors, progress=self.show_progress)
        except (WorkbenchError, ValueError) as error:
            self.notify(str(error), severity="error", title="Cannot start the benchmark")
            return
        self.runner = runner
        self.query_one("#bench-bar", ProgressBar).update(total=runner.total, progress=0)
        self.query_one("#bench-run", Button).disabled = True
        self.query_one("#bench-stop", Button).disabled = False
        self.run_benchmark(runner)

    @on(Button.Pressed, "#bench-stop")
    def action_stop(self) -> None:
        if self.runner is not None:
            self.runner.request_stop()
            self.query_one("#bench-status", Static).update("stopping…")

    @work(exclusive=True, group="benchmark")
    async def run_benchmark(self, runner: BenchmarkRunner) -> None:
        try:
            run = await runner.run()
        except Exception as error:  # noqa: BLE001 - shown to the user; the screen stays usable
            self.notify(f"{type(error).__name__}: {error}", severity="error", title="Benchmark failed", markup=False)
            return
        finally:
            self.runner = None
            self.query_one("#bench-run", Button).disabled = False
            self.query_one("#bench-stop", Button).disabled = True
        self.show_run(run)  # shown before saving: a save that fails loses nothing
        note = " (interrupted: what finished)" if run.notes.get("interrupted") else ""
        status = self.query_one("#bench-status", Static)
        try:
            saved = await asyncio.to_thread(save_benchmark_or_fallback, run, self.sessions_dir / f"{run.id}.json")
        except OSError as error:
            status.update(f"not saved: {error}{note}")
            self.notify(str(error), severity="error", title="Benchmark not saved", markup=False)
            return
        self.saved_path = saved.path
        if saved.failed is not None:
            message = f"could not write {saved.failed} ({saved.problem}); saved to {saved.path} instead"
            self.notify(message, severity="warning", title="Saved elsewhere", markup=False)
            status.update(f"{message}{note}")
        else:
            status.update(f"saved {saved.path}{note}")
        self.action_reload()

    def show_progress(self, progress: BenchProgress) -> None:
        self.query_one("#bench-bar", ProgressBar).update(total=progress.total, progress=progress.done)
        where = f" {progress.actor} @ {progress.concurrency}" if progress.actor else ""
        errors = f", {progress.errors} errors" if progress.errors else ""
        self.query_one("#bench-status", Static).update(f"{progress.phase}{where}{errors}")

    # ----- results ----------------------------------------------------------------------------------------
    def show_run(self, run: BenchmarkRun) -> None:
        self.run_shown = run
        table = self.query_one("#bench-results", DataTable)
        table.clear()
        for s in run.summaries:
            table.add_row(
                *map(plain, (s.actor, s.concurrency, s.requests, s.errors)),
                *(plain(COLUMNS_BY_KEY[key].cell(s)) for key in SUMMARY_KEYS),
            )
        agreement = self.query_one("#bench-agreement", DataTable)
        agreement.clear()
        for pair in run.agreement:
            agreement.add_row(*map(plain, agreement_cells(pair)))
        agreement.display = bool(run.agreement)
        self.query_one("#bench-agreement-title", Static).update(
            "Agreement between actors (same prompts, greedy): identical answers, mean character where "
            "differing answers part, normalised edit similarity; cosine for embeddings"
            if run.agreement else "")
        width = max(40, min(120, self.size.width - 4))
        self.query_one("#bench-plots", Static).update(plots([run], [run.id], width=width))

    def action_reload(self) -> None:
        self.runs = saved_runs(self.sessions_dir)
        table = self.query_one("#bench-runs", DataTable)
        table.clear()
        for path in self.runs:
            table.add_row(plain(path.name), "", "", "", key=str(path))
        self.describe_runs(list(self.runs))

    @work(exclusive=True, group="describe")
    async def describe_runs(self, paths: list[Path]) -> None:
        """Fill in each saved run's date, actors and levels, reading the files off the loop."""
        table = self.query_one("#bench-runs", DataTable)
        for path in paths:
            try:
                run = await asyncio.to_thread(load_benchmark, path)
            except WorkbenchError as error:
                table.update_cell(str(path), table.ordered_columns[1].key, plain(f"unreadable: {error}"[:60]))
                continue
            columns = table.ordered_columns
            table.update_cell(str(path), columns[1].key, f"{run.created_at:%Y-%m-%d %H:%M}")
            table.update_cell(str(path), columns[2].key, plain(", ".join(run.config.actors)))
            table.update_cell(str(path), columns[3].key, ",".join(map(str, run.config.concurrency)))

    @on(DataTable.RowSelected, "#bench-runs")
    def action_open_selected(self) -> None:
        table = self.query_one("#bench-runs", DataTable)
        if not self.runs or table.cursor_row < 0:
            return
        self.open_run(self.runs[min(table.cursor_row, len(self.runs) - 1)])

    @work(exclusive=True, group="open")
    async def open_run(self, path: Path) -> None:
        try:
            run = await asyncio.to_thread(load_benchmark, path)
        except WorkbenchError as error:
            self.notify(str(error), severity="error", title="Cannot open the run")
            return
        self.show_run(run)
        self.query_one("#bench-status", Static).update(f"showing {path.name}")

    def action_close(self) -> None:
        if self.runner is not None:
            self.runner.request_stop()
        self.app.pop_screen()
