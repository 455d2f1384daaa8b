"""The benchmark screen in a tiny host app, driven with Pilot: run, see results and plots, open a run."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.widgets import DataTable, Input, Static

from tests.support.scripted import ScriptedActor
from workbench.actors.limit import ConcurrencyLimit
from workbench.app.screens.benchmark import BenchmarkScreen, saved_runs
from workbench.sessions.schema import BenchmarkConfig, BenchmarkRun, ChatSession, LevelSummary
from workbench.sessions.store import load_benchmark, save_benchmark, save_session


class Host(App[None]):
    def __init__(self, screen: BenchmarkScreen) -> None:
        super().__init__()
        self.bench_screen = screen

    def on_mount(self) -> None:
        self.push_screen(self.bench_screen)


async def _until(pilot, condition, tries: int = 400) -> None:  # type: ignore[no-untyped-def]
    for _ in range(tries):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached")


async def test_run_shows_results_and_plots_and_saves(tmp_path: Path) -> None:
    actors = [ScriptedActor("echo", limit=ConcurrencyLimit(1)), ScriptedActor("missing", limit=ConcurrencyLimit(1))]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('"one two three"\n"four five"\n', encoding="utf-8")
    screen = BenchmarkScreen(actors, tmp_path, prompts=str(prompts), concurrency="1,2", max_tokens=4, warmup=0)
    try:
        async with Host(screen).run_test(size=(140, 50)) as pilot:
            await pilot.press("ctrl+r")
            await _until(pilot, lambda: screen.saved_path is not None)
            results = screen.query_one("#bench-results", DataTable)
            assert results.row_count == 4  # 2 actors x 2 levels
            rows = [[str(cell) for cell in results.get_row_at(index)] for index in range(results.row_count)]
            assert [row[:4] for row in rows] == [
                ["scripted:echo", "1", "2", "0"], ["scripted:echo", "2", "2", "0"],
                ["scripted:missing", "1", "2", "2"], ["scripted:missing", "2", "2", "2"],
            ]
            plot_text = str(screen.query_one("#bench-plots", Static).render())
            assert "concurrency" in plot_text and "scripted:echo" in plot_text
            run = load_benchmark(screen.saved_path)
            assert run.config.actors == ["scripted:echo", "scripted:missing"] and run.config.max_tokens == 4
            assert screen.query_one("#bench-runs", DataTable).row_count == 1
    finally:
        for actor in actors:
            await actor.stop(drain=False)


async def test_opens_saved_runs_and_skips_sessions(tmp_path: Path) -> None:
    summary = LevelSummary(actor="torch:smollm2", concurrency=4, requests=3, errors=1, duration_s=1.0,
                           request_throughput=2.0, output_tokens_per_s=48.0)
    save_benchmark(BenchmarkRun(id="old", config=BenchmarkConfig(actors=["torch:smollm2"]), summaries=[summary]),
                   tmp_path / "old.json")
    save_session(ChatSession(id="chat"), tmp_path / "chat.json")
    assert saved_runs(tmp_path) == [tmp_path / "old.json"]
    screen = BenchmarkScreen([], tmp_path)
    async with Host(screen).run_test(size=(140, 50)) as pilot:
        runs = screen.query_one("#bench-runs", DataTable)
        runs.focus()
        await pilot.press("ctrl+o")
        await _until(pilot, lambda: screen.run_shown is not None)
        row = [str(cell) for cell in screen.query_one("#bench-results", DataTable).get_row_at(0)]
        assert row[:5] == ["torch:smollm2", "4", "3", "1", "48.0"]
        await _until(pilot, lambda: str(runs.get_row_at(0)[2]) == "torch:smollm2")
        await pilot.press("ctrl+r")  # no actors: refused with a message, nothing runs
        assert screen.runner is None


async def test_bad_settings_are_refused_with_a_message(tmp_path: Path) -> None:
    actor = ScriptedActor("echo", limit=ConcurrencyLimit(1))
    screen = BenchmarkScreen([actor], tmp_path)
    try:
        async with Host(screen).run_test(size=(140, 50)) as pilot:
            screen.query_one("#bench-concurrency", Input).value = "1,x"
            await pilot.press("ctrl+r")
            await pilot.pause()
            assert screen.runner is None and screen.saved_path is None
            assert any("whole numbers" in str(n.message) for n in pilot.app._notifications)
    finally:
        await actor.stop(drain=False)


async def test_accuracy_and_agreement_columns_show_plain_text(tmp_path: Path) -> None:
    from tests.support.shouting import ShoutingActor

    limit = ConcurrencyLimit(1)
    actors = [ScriptedActor("echo", limit=limit), ShoutingActor("echo", limit=limit)]
    prompts = tmp_path / "qa.jsonl"
    prompts.write_text(
        '{"prompt": "alpha beta [b]gamma[/b] delta", "expected": {"match": "contains", "value": "gamma"}}\n'
        '{"prompt": "the answer is 3", "expected": {"match": "number", "value": 4}}\n', encoding="utf-8")
    screen = BenchmarkScreen(actors, tmp_path, prompts=str(prompts), concurrency="1", max_tokens=8, warmup=0)
    try:
        async with Host(screen).run_test(size=(160, 50)) as pilot:
            await pilot.press("ctrl+r")
            await _until(pilot, lambda: screen.saved_path is not None)
            results = screen.query_one("#bench-results", DataTable)
            accuracy_column = [str(column.label) for column in results.ordered_columns].index("acc %")
            assert [str(results.get_row_at(i)[accuracy_column]) for i in range(2)] == ["50.0 (1/2)", "50.0 (1/2)"]
            agreement = screen.query_one("#bench-agreement", DataTable)
            assert agreement.display and agreement.row_count == 1
            row = [str(cell) for cell in agreement.get_row_at(0)]
            assert row[:5] == ["scripted:echo", "shouting:echo", "2", "0% (0/2)", "11.5"]  # (12 + 11) / 2: "alpha beta [|B]GAMMA", "the answer |IS"
            assert 0.5 < float(row[5]) < 1.0
            assert "Agreement between actors" in str(screen.query_one("#bench-agreement-title", Static).render())
            saved = load_benchmark(screen.saved_path)
            assert saved.records[0].answer == "alpha beta [b]gamma[/b] delta"  # kept as the model said it
    finally:
        for actor in actors:
            await actor.stop(drain=False)
