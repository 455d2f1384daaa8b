"""A benchmark whose folder cannot be written (issue 11): the summary is printed first, and the run
is saved in the fallback folder, with both places named; nothing is lost, no traceback."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from tests.bench.test_bench_command import ROOT, TIMEOUT_S, _command, _env
from tests.support.scripted import ScriptedActor
from workbench.actors.limit import ConcurrencyLimit
from workbench.app.screens.benchmark import BenchmarkScreen
from workbench.sessions.store import load_benchmark


def test_an_unwritable_output_folder_saves_to_the_fallback_and_says_where(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    output = blocker / "run.json"  # its folder cannot be made: the save fails with an OSError
    temp = tmp_path / "tmp"
    temp.mkdir()
    done = subprocess.run(_command("bench", "--actor", "scripted:echo", "--warmup", "0", "--quiet", "-o", str(output)),
                          cwd=ROOT, env={**_env(tmp_path), "TMPDIR": str(temp)},
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    fallback = temp / "workbench-unsaved" / "run.json"
    assert f"could not write {output}" in done.stderr and str(fallback) in done.stderr
    assert done.stdout.index("scripted:echo") < done.stdout.index(f"saved {fallback}")  # summary first
    run = load_benchmark(fallback)
    assert run.records and all(record.ok for record in run.records)
    assert not os.path.exists(output)


async def test_the_benchmark_screen_shows_the_run_then_saves_it_to_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.bench.test_benchmark_screen import Host, _until

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the sessions folder should be")
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where the system temp folder is, for this test
    actor = ScriptedActor("echo", limit=ConcurrencyLimit(1))
    screen = BenchmarkScreen([actor], blocker, concurrency="1", max_tokens=4, warmup=0)
    try:
        async with Host(screen).run_test(size=(140, 50)) as pilot:
            await pilot.press("ctrl+r")
            await _until(pilot, lambda: screen.saved_path is not None)
            assert screen.query_one("#bench-results", DataTable).row_count == 1  # the run is shown
            status = str(screen.query_one("#bench-status", Static).render())
            assert "could not write" in status and "workbench-unsaved" in status
            assert screen.saved_path.parent == temp / "workbench-unsaved"
            assert load_benchmark(screen.saved_path).records
    finally:
        await actor.stop(drain=False)
