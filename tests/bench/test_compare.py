"""Comparison reports: common (actor, level) pairs with ratios, the rest listed, plots as text."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.bench.compare import compare_runs, pair_runs, plot_levels, plots, summary_table
from workbench.commands.bench import compare as compare_command
from workbench.sessions.schema import BenchmarkConfig, BenchmarkRun, LevelSummary, Percentiles, RequestRecord
from workbench.sessions.store import save_benchmark


def _level(actor: str, level: int, tokens_per_s: float, ttft: float, errors: int = 0) -> LevelSummary:
    p = Percentiles(p50=ttft, p90=ttft, p99=ttft, mean=ttft, count=4)
    return LevelSummary(actor=actor, concurrency=level, requests=4, errors=errors, duration_s=1.0,
                        request_throughput=4.0, output_tokens_per_s=tokens_per_s, metrics={"ttft_s": p})


def _run(run_id: str, *levels: LevelSummary) -> BenchmarkRun:
    actors = sorted({summary.actor for summary in levels})
    return BenchmarkRun(id=run_id, config=BenchmarkConfig(actors=actors), summaries=list(levels))


A = _run("a", _level("torch:smollm2", 1, 20.0, 0.5), _level("torch:smollm2", 2, 22.0, 0.9),
         _level("ollama:smollm2", 1, 40.0, 0.2))
B = _run("b", _level("torch:smollm2", 1, 30.0, 0.25), _level("torch:smollm2", 4, 25.0, 2.0),
         _level("transformers:smollm2", 1, 10.0, 1.0))


def test_runs_with_different_actor_sets_compare_on_common_pairs() -> None:
    pairing = pair_runs([A, B], ["a", "b"])
    assert pairing.common == [("torch:smollm2", 1)]
    assert pairing.missing == {
        "a": [("torch:smollm2", 4), ("transformers:smollm2", 1)],
        "b": [("torch:smollm2", 2), ("ollama:smollm2", 1)],
    }
    text = compare_runs([A, B], ["a", "b"], columns=("output_tokens_per_s", "ttft_p50"))
    tokens, ttft = text.split("\n\n")[:2]
    assert "20.0  30.0 (1.50x)" in tokens
    assert "500.0  250.0 (0.50x)" in ttft  # TTFT in ms
    assert "not in a: torch:smollm2 @ 4, transformers:smollm2 @ 1" in text
    assert "not in b: torch:smollm2 @ 2, ollama:smollm2 @ 1" in text


def test_compare_with_nothing_in_common_says_so() -> None:
    other = _run("c", _level("ollama:llama3", 8, 1.0, 1.0))
    text = compare_runs([A, other], ["a", "c"], columns=("errors",))
    assert "(no common pairs)" in text
    with pytest.raises(ValueError, match="at least two"):
        compare_runs([A], ["a"])


def test_plots_draw_every_actor_per_level_as_plain_text() -> None:
    text = plot_levels([A, B], ["a", "b"], "output_tokens_per_s", width=70, height=16)
    assert "\x1b[" not in text
    assert "output tokens/s (aggregate)" in text and "concurrency" in text
    for label in ("a: torch:smollm2", "a: ollama:smollm2", "b: transformers:smollm2"):
        assert label in text
    both = plots([A], ["a"], width=60)
    assert "TTFT p50 (ms)" in both and "torch:smollm2" in both


def test_summary_table_names_failed_actors_and_interruptions() -> None:
    run = _run("x", _level("ok:m", 1, 12.5, 0.1), _level("bad:m", 1, 0.0, 0.0, errors=4))
    run = run.model_copy(update={
        "records": [RequestRecord(actor="bad:m", concurrency=1, prompt_index=0, ok=False, error="ModelNotFound: no m")],
        "notes": {"interrupted": True},
    })
    text = summary_table(run)
    assert "12.5" in text
    assert "bad:m: first error: ModelNotFound: no m" in text
    assert "interrupted" in text


def test_compare_command_reads_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = save_benchmark(A, tmp_path / "first.json"), save_benchmark(B, tmp_path / "second.json")
    assert compare_command([first, second], plot=True, width=60) == 0
    out = capsys.readouterr().out
    assert "first" in out and "(1.50x)" in out and "not in first" in out and "concurrency" in out
