"""Reports on benchmark runs: the summary table of one run, the comparison of several, and
terminal plots (plotext, built to a string) of tokens/s and TTFT per actor and concurrency level.

Runs compare on the (actor, concurrency) pairs they all have; pairs only some runs have are listed
rather than silently dropped. Ratios are to the first run: 2.00x on tokens/s means twice as fast,
on TTFT twice as slow, on accuracy twice as many right. Accuracy is shown with its count (right/scored);
a run's agreement between actors is a table of its own (`agreement_table`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import plotext as plt

from workbench.bench.agreement import answers_by_actor, text_agreement
from workbench.bench.prompts import prompt_text
from workbench.sessions.schema import BenchmarkRun, LevelSummary, PairAgreement

MIB = 1024 * 1024
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MARKERS = "•x+*o#@%"

Key = tuple[str, int]


def _pct(metric: str, stat: str) -> Callable[[LevelSummary], float | None]:
    def get(summary: LevelSummary) -> float | None:
        found = summary.metrics.get(metric)
        return getattr(found, stat) if found is not None else None

    return get


def _ms(metric: str, stat: str) -> Callable[[LevelSummary], float | None]:
    seconds = _pct(metric, stat)

    def get(summary: LevelSummary) -> float | None:
        value = seconds(summary)
        return None if value is None else value * 1000.0

    return get


@dataclass(frozen=True, slots=True)
class Column:
    """A figure shown per (actor, level): its title, how to get it, and how to print it."""

    key: str
    title: str
    short: str
    get: Callable[[LevelSummary], float | None]
    digits: int = 1
    suffix: Callable[[LevelSummary], str] | None = None  # shown after the figure: accuracy's count

    def cell(self, summary: LevelSummary) -> str:
        text = fmt(self.get(summary), self.digits)
        return f"{text} {self.suffix(summary)}" if self.suffix is not None and text != "-" else text


def _accuracy_percent(summary: LevelSummary) -> float | None:
    return None if summary.accuracy is None else summary.accuracy * 100.0


def _accuracy_count(summary: LevelSummary) -> str:
    return f"({summary.correct}/{summary.scored})"


COLUMNS: tuple[Column, ...] = (
    Column("output_tokens_per_s", "output tokens/s (aggregate)", "tok/s", lambda s: s.output_tokens_per_s, 1),
    Column("accuracy", "accuracy (% right of the scored answers, right/scored)", "acc %", _accuracy_percent, 1,
           _accuracy_count),
    Column("request_throughput", "requests/s", "req/s", lambda s: s.request_throughput, 2),
    Column("ttft_p50", "TTFT p50 (ms)", "TTFT p50", _ms("ttft_s", "p50")),
    Column("cached_prompt_pct", "prompt tokens served from the runtime's prompt cache (% of prompt tokens)",
           "cached %", lambda s: None if s.cached_prompt_share is None else s.cached_prompt_share * 100.0, 0),
    Column("ttft_p90", "TTFT p90 (ms)", "p90", _ms("ttft_s", "p90")),
    Column("ttft_p99", "TTFT p99 (ms)", "p99", _ms("ttft_s", "p99")),
    Column("itl_p50", "ITL p50 (ms)", "ITL p50", _ms("itl_s", "p50")),
    Column("tpot_p50", "TPOT p50 (ms)", "TPOT p50", _ms("tpot_s", "p50")),
    Column("e2e_p50", "E2E p50 (ms)", "E2E p50", _ms("e2e_s", "p50")),
    Column("e2e_p90", "E2E p90 (ms)", "p90", _ms("e2e_s", "p90")),
    Column("e2e_p99", "E2E p99 (ms)", "p99", _ms("e2e_s", "p99")),
    Column("request_tokens_per_s_mean", "output tokens/s per request (mean)", "tok/s/req",
           _pct("output_tokens_per_s", "mean")),
    Column("peak_rss_mib", "peak RSS (MiB)", "RSS MiB", lambda s: s.peak_rss_bytes / MIB if s.peak_rss_bytes else None, 0),
    Column("mean_rss_mib", "mean RSS (MiB)", "mean RSS", lambda s: s.mean_rss_bytes / MIB if s.mean_rss_bytes else None, 0),
    Column("mean_cpu_percent", "mean CPU (% of a core)", "CPU %", lambda s: s.mean_cpu_percent, 0),
    Column("errors", "errors", "err", lambda s: float(s.errors), 0),
)
COLUMNS_BY_KEY = {column.key: column for column in COLUMNS}
SUMMARY_KEYS = ("output_tokens_per_s", "accuracy", "request_throughput", "ttft_p50", "ttft_p90", "ttft_p99",
                "cached_prompt_pct", "itl_p50",
                "tpot_p50", "e2e_p50", "e2e_p90", "peak_rss_mib", "mean_cpu_percent")
"""The summary table's figures; latencies in milliseconds (every percentile is in the saved file)."""


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned table: the first column left-aligned, the rest right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(cell).ljust(width) if index == 0 else str(cell).rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * width for width in widths]), *(line(row) for row in rows)])


def summary_table(run: BenchmarkRun) -> str:
    """One row per actor and level: requests, errors and the headline figures."""
    headers = ["actor", "conc", "req", "err", *(COLUMNS_BY_KEY[key].short for key in SUMMARY_KEYS)]
    rows = [
        [s.actor, str(s.concurrency), str(s.requests), str(s.errors), *(COLUMNS_BY_KEY[key].cell(s) for key in SUMMARY_KEYS)]
        for s in run.summaries
    ]
    text = text_table(headers, rows)
    if run.agreement:
        text += "\n\n" + agreement_table(run.agreement)
    problems = run.notes.get("actor_errors") or {}
    for actor, error in problems.items():
        text += f"\n{actor}: {error}"
    first_errors = _first_errors(run)
    for actor, error in first_errors.items():
        if actor not in problems:
            text += f"\n{actor}: first error: {error}"
    if run.notes.get("interrupted"):
        text += "\n(interrupted: only the requests that finished are counted)"
    return text


AGREEMENT_HEADERS = ("actor A", "actor B", "prompts", "identical", "first diff (chars)", "similarity", "cosine")


def agreement_cells(pair: PairAgreement) -> list[str]:
    """One pair's figures as table cells (AGREEMENT_HEADERS): identical rate with its count, mean
    first-divergence index over the differing answers, mean similarity (text) or cosine (embed)."""
    cosine = "-" if pair.mean_cosine is None else f"{pair.mean_cosine:.4f} (min {pair.min_cosine:.4f})"
    return [
        pair.a, pair.b, str(pair.compared),
        f"{pair.identical_rate * 100:.0f}% ({pair.identical}/{pair.compared})",
        fmt(pair.mean_first_divergence, 1), fmt(pair.mean_similarity, 3), cosine,
    ]


def agreement_table(pairs: Sequence[PairAgreement]) -> str:
    """Agreement between actors, per pair, on the same greedy prompts."""
    title = ("agreement (same prompts; first diff = mean character index where differing answers part; "
             "similarity = 1 - normalised edit distance)")
    return f"{title}\n{text_table(AGREEMENT_HEADERS, [agreement_cells(pair) for pair in pairs])}"


def divergence_lines(run: BenchmarkRun, per_pair: int = 8) -> list[str]:
    """Where each pair's answers part, prompt by prompt (at most `per_pair` lines a pair)."""
    lines: list[str] = []
    for pair in run.agreement:
        differing = [p for p in pair.prompts if not p.identical]
        if not pair.compared:
            lines.append(f"{pair.a} vs {pair.b}: no prompt was answered by both")
            continue
        if not differing:
            lines.append(f"{pair.a} vs {pair.b}: every compared answer identical ({pair.compared})")
            continue
        lines.append(f"{pair.a} vs {pair.b}: {len(differing)} of {pair.compared} answers differ")
        for found in differing[:per_pair]:
            prompt = _prompt_label(run, found.prompt_index)
            if found.cosine is not None:
                lines.append(f"  #{found.prompt_index} {prompt}: cosine {found.cosine:.4f}")
            else:
                lines.append(f"  #{found.prompt_index} {prompt}: part at character {found.first_divergence}, "
                             f"similarity {fmt(found.similarity, 3)}")
        if len(differing) > per_pair:
            lines.append(f"  … and {len(differing) - per_pair} more (all in the saved file)")
    return lines


def _prompt_label(run: BenchmarkRun, index: int, width: int = 48) -> str:
    if not 0 <= index < len(run.prompt_set):
        return ""
    text = " ".join(prompt_text(run.prompt_set[index]).split())
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def _first_errors(run: BenchmarkRun) -> dict[str, str]:
    found: dict[str, str] = {}
    for record in run.records:
        if not record.ok and record.actor not in found:
            found[record.actor] = record.error or "unknown error"
    return found


def _by_key(run: BenchmarkRun) -> dict[Key, LevelSummary]:
    return {(s.actor, s.concurrency): s for s in run.summaries}


@dataclass(frozen=True, slots=True)
class Pairing:
    """Which (actor, level) pairs every run has, and which only some have."""

    common: list[Key]
    missing: dict[str, list[Key]]  # run name -> pairs other runs have and it lacks


def pair_runs(runs: Sequence[BenchmarkRun], names: Sequence[str]) -> Pairing:
    keyed = [_by_key(run) for run in runs]
    every: list[Key] = []
    for table in keyed:
        every.extend(key for key in table if key not in every)
    common = [key for key in every if all(key in table for table in keyed)]
    missing = {name: [key for key in every if key not in table] for name, table in zip(names, keyed)}
    return Pairing(common, {name: keys for name, keys in missing.items() if keys})


def compare_runs(runs: Sequence[BenchmarkRun], names: Sequence[str], columns: Sequence[str] | None = None) -> str:
    """A table per metric over the common pairs: each run's value and its ratio to the first run's."""
    if len(runs) < 2:
        raise ValueError("compare needs at least two runs")
    pairing = pair_runs(runs, names)
    keyed = [_by_key(run) for run in runs]
    parts: list[str] = []
    for key in columns or [column.key for column in COLUMNS]:
        column = COLUMNS_BY_KEY[key]
        headers = ["actor", "conc", names[0], *names[1:]]
        rows = []
        for actor, level in pairing.common:
            base = column.get(keyed[0][(actor, level)])
            cells = [actor, str(level), column.cell(keyed[0][(actor, level)])]
            for table in keyed[1:]:
                value = column.get(table[(actor, level)])
                cells.append(f"{column.cell(table[(actor, level)])} ({_ratio(value, base)})")
            rows.append(cells)
        parts.append(f"{column.title}\n{text_table(headers, rows)}" if rows else f"{column.title}\n(no common pairs)")
    for name, keys in pairing.missing.items():
        listed = ", ".join(f"{actor} @ {level}" for actor, level in keys)
        parts.append(f"not in {name}: {listed}")
    changes = answer_changes(runs, names)
    if changes:
        parts.append(changes)
    return "\n\n".join(parts)


def answer_changes(runs: Sequence[BenchmarkRun], names: Sequence[str]) -> str:
    """Did an actor answer the same prompts the same way in each run as in the first? (Runs that kept
    answers and used the same prompts; "" when there is nothing to compare.)"""
    base = runs[0]
    base_answers = answers_by_actor(base.records)
    base_texts = [prompt_text(prompt) for prompt in base.prompt_set]
    pairs: list[PairAgreement] = []
    for name, run in zip(names[1:], runs[1:]):
        if not base_texts or [prompt_text(prompt) for prompt in run.prompt_set] != base_texts:
            continue
        answers = answers_by_actor(run.records)
        for actor in base_answers.keys() & answers.keys():
            labelled = {f"{names[0]}: {actor}": base_answers[actor], f"{name}: {actor}": answers[actor]}
            pairs.extend(text_agreement(labelled, list(labelled)))
    if not pairs:
        return ""
    rows = [agreement_cells(pair)[:-1] for pair in pairs]
    return ("answers against the first run (same actor, same prompts)\n"
            + text_table(AGREEMENT_HEADERS[:-1], rows))


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None:
        return "-"
    if base == 0:
        return "=" if value == 0 else "n/a"
    return f"{value / base:.2f}x"


def plot_levels(
    runs: Sequence[BenchmarkRun],
    names: Sequence[str],
    key: str,
    *,
    width: int = 80,
    height: int = 18,
    color: bool = False,
) -> str:
    """A line per (run, actor) of one figure against concurrency level, as terminal text."""
    column = COLUMNS_BY_KEY[key]
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("pro" if color else "clear")
    levels: set[int] = set()
    series = 0
    for name, run in zip(names, runs):
        by_actor: dict[str, list[tuple[int, float]]] = {}
        for summary in run.summaries:
            value = column.get(summary)
            if value is not None and summary.requests > summary.errors:
                by_actor.setdefault(summary.actor, []).append((summary.concurrency, value))
        for actor, points in by_actor.items():
            points.sort()
            label = actor if len(runs) == 1 else f"{name}: {actor}"
            plt.plot([p[0] for p in points], [p[1] for p in points], label=label,
                     marker=_MARKERS[series % len(_MARKERS)])
            levels.update(p[0] for p in points)
            series += 1
    if levels:
        plt.xticks(sorted(levels))
    plt.title(column.title)
    plt.xlabel("concurrency")
    text = plt.build()
    plt.clear_figure()
    return text if color else _ANSI.sub("", text)


def plots(runs: Sequence[BenchmarkRun], names: Sequence[str], *, width: int = 80, color: bool = False) -> str:
    """The standard pair of plots: aggregate tokens/s and TTFT p50, per actor and level."""
    return "\n".join(
        plot_levels(runs, names, key, width=width, color=color) for key in ("output_tokens_per_s", "ttft_p50")
    )
