"""`workbench bench`: run a benchmark, re-run a saved one, or compare saved runs.

    workbench bench --actor SPEC [--actor SPEC ...] [--prompts NAME|FILE] [--concurrency 1,2,4] ...
    workbench bench --agreement --actor A --actor B [...]   (greedy answers compared pair by pair)
    workbench bench replay RUN.json [-o FILE]
    workbench bench compare A.json B.json [...]

Ctrl-C stops a run cleanly: the requests in flight are cancelled, what finished is saved, and the
command exits with 130. A second Ctrl-C exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from workbench.bench.compare import compare_runs, divergence_lines, plots, summary_table
from workbench.bench.prompts import BUILTIN_NAMES, load_prompts
from workbench.bench.runner import BenchmarkRunner, BenchProgress, validate_config
from workbench.errors import BenchmarkError
from workbench.runtimes.registry import parse_spec
from workbench.runtimes.types import GenerationOptions
from workbench.sessions.schema import BenchmarkConfig, BenchmarkRun
from workbench.sessions.store import default_sessions_dir, load_benchmark, save_benchmark_or_fallback

INTERRUPTED_EXIT = 130
DEFAULT_MAX_TOKENS = 64


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark actors across concurrency levels; replay or compare saved runs",
        description="Run the same workload against each actor at each concurrency level. Concurrency N "
        "keeps N requests in flight from the client; one actor still runs them one at a time, so for "
        "one actor the extra requests queue, and that wait shows up in TTFT and E2E.",
    )
    parser.add_argument("--actor", dest="bench_actors", action="append", default=[], metavar="SPEC",
                        help="actor to benchmark (runtime:model[@host]); repeat for more")
    parser.add_argument("--prompts", default=None, metavar="NAME|FILE",
                        help=f"built-in set ({', '.join(BUILTIN_NAMES)}) or a JSONL file (default: short, "
                        "or embed with --op embed)")
    parser.add_argument("--concurrency", default="1", metavar="N[,N...]",
                        help="requests in flight at once, one level per value (default: 1)")
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, metavar="N",
                        help=f"output tokens per request (default: {DEFAULT_MAX_TOKENS})")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="sampling temperature (default: 0, greedy, so runs are repeatable)")
    parser.add_argument("--warmup", type=int, default=1, metavar="N",
                        help="warm-up requests per actor, not counted (default: 1)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N", help="times to send each prompt per level")
    parser.add_argument("--op", choices=("chat", "generate", "embed"), default="chat", help="operation to measure")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="threads for in-process runtimes")
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                        help="where to save the run (default: the sessions folder)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument("--agreement", action="store_true",
                        help="send the same greedy prompts (default: the scored set) to two or more actors at "
                        "concurrency 1 and report, per pair, identical-answer rate, mean first-divergence "
                        "index (characters) and similarity (cosine for --op embed), beside accuracy")
    parser.set_defaults(handler=run, bench_command=None)
    commands = parser.add_subparsers(dest="bench_command", metavar="SUBCOMMAND")
    replay = commands.add_parser("replay", help="re-run the exact config of a saved run; saves a new file")
    replay.add_argument("file", type=Path, help="a saved benchmark run (.json)")
    replay.add_argument("-o", "--output", dest="replay_output", type=Path, default=None, metavar="FILE")
    replay.add_argument("--quiet", dest="replay_quiet", action="store_true", help="no progress line")
    compare = commands.add_parser("compare", help="compare saved runs: a table per metric and plots")
    compare.add_argument("files", type=Path, nargs="+", metavar="RUN.json")
    compare.add_argument("--no-plots", action="store_true", help="tables only")
    compare.add_argument("--width", type=int, default=80, help="plot width in columns")


def run(args: argparse.Namespace) -> int:
    if args.bench_command == "compare":
        return compare(args.files, plot=not args.no_plots, width=args.width)
    if args.bench_command == "replay":
        original = load_benchmark(args.file)
        runner = BenchmarkRunner(original.config, prompts=original.prompt_set or None)
        code, new = execute(runner, args.replay_output, getattr(args, "sessions", None), quiet=args.replay_quiet)
        print()
        print(compare_runs([original, new], [f"{args.file.name} (original)", "replay"],
                           columns=("output_tokens_per_s", "accuracy", "ttft_p50", "e2e_p50", "errors")))
        return code
    config = config_from_args(args)
    runner = BenchmarkRunner(config, prompts=load_prompts(config.prompts))
    code, result = execute(runner, args.output, getattr(args, "sessions", None), quiet=args.quiet)
    if getattr(args, "agreement", False):
        for line in divergence_lines(result):
            print(line)
    return code


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BenchmarkError(f"--concurrency takes whole numbers separated by commas (1,2,4), not {text!r}") from None
    if not levels:
        raise BenchmarkError("--concurrency needs at least one level")
    return levels


def config_from_args(args: argparse.Namespace) -> BenchmarkConfig:
    if not args.bench_actors:
        raise BenchmarkError("name at least one actor: workbench bench --actor transformers:smollm2")
    for spec in args.bench_actors:
        parse_spec(spec)  # a bad spec fails now, before any model loads
    agreement = getattr(args, "agreement", False)
    if agreement:
        _check_agreement_args(args)
    default_prompts = "embed" if args.op == "embed" else ("scored" if agreement else "short")
    config = BenchmarkConfig(
        actors=list(args.bench_actors),
        op=args.op,
        prompts=args.prompts or default_prompts,
        concurrency=parse_levels(args.concurrency),
        max_tokens=None if args.op == "embed" else args.max_tokens,
        warmup=args.warmup,
        repeat=args.repeat,
        threads=args.threads,
        placement=getattr(args, "placement", None),
        options=GenerationOptions(temperature=args.temperature) if args.op != "embed" else GenerationOptions(),
    )
    validate_config(config)
    return config


def _check_agreement_args(args: argparse.Namespace) -> None:
    """Agreement compares greedy answers, one request at a time: refuse settings that would not."""
    if len(args.bench_actors) < 2:
        raise BenchmarkError("--agreement compares actors: name two or more with --actor")
    if args.temperature != 0.0:
        raise BenchmarkError("--agreement compares greedy answers: leave --temperature at 0")
    if parse_levels(args.concurrency) != [1]:
        raise BenchmarkError("--agreement runs at concurrency 1 (answers do not depend on the level)")


def output_path(run: BenchmarkRun, output: Path | None, sessions: str | None) -> Path:
    if output is not None:
        return output
    folder = Path(sessions) if sessions else default_sessions_dir()
    return folder / f"{run.id}.json"


def execute(
    runner: BenchmarkRunner, output: Path | None, sessions: str | None, *, quiet: bool = False
) -> tuple[int, BenchmarkRun]:
    """Run with a progress line and Ctrl-C handling; print the summary; save. Returns (exit code, run).

    The summary is printed before saving, so a save that fails loses nothing on screen; a folder that
    cannot be written gets the run saved in the fallback folder instead (exit 1, saying both paths)."""
    line = None if quiet else ProgressLine(sys.stderr)
    runner.progress = line
    result = asyncio.run(_run_interruptibly(runner))
    if line is not None:
        line.close()
    print(summary_table(result), flush=True)
    for line_text in memory_lines(result):
        print(line_text)
    try:
        saved = save_benchmark_or_fallback(result, output_path(result, output, sessions))
    except OSError as error:
        raise BenchmarkError(f"the run was not saved: {error}") from None
    print(f"saved {saved.path}")
    if saved.failed is not None:
        print(f"workbench: could not write {saved.failed} ({saved.problem}); saved the run to {saved.path} "
              "instead: move it where you want it", file=sys.stderr)
    if result.notes.get("interrupted"):
        print("workbench: interrupted; saved the requests that finished", file=sys.stderr)
        return INTERRUPTED_EXIT, result
    return (0 if saved.failed is None else 1), result


def memory_lines(run: BenchmarkRun) -> list[str]:
    """One line per actor: its own process's memory and what the model added over the baseline."""
    def mib(value: int | None) -> str:
        return "?" if value is None else f"{value / 2**20:.0f} MiB"

    return [
        f"memory {item.actor} ({item.placement or '?'} pid {item.pid}{', shared with the app' if item.shared else ''}): "
        f"RSS {mib(item.rss_bytes)}, USS {mib(item.uss_bytes)}, model RSS {mib(item.model_rss_bytes)}, "
        f"model USS {mib(item.model_uss_bytes)}"
        for item in run.actor_memory
    ]


async def _run_interruptibly(runner: BenchmarkRunner) -> BenchmarkRun:
    loop = asyncio.get_running_loop()

    def on_interrupt() -> None:
        loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C interrupts for real
        runner.request_stop()

    try:
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        installed = True
    except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
        installed = False
    try:
        return await runner.run()
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)


def compare(files: Sequence[Path], *, plot: bool = True, width: int = 80) -> int:
    if len(files) < 2:
        raise BenchmarkError("compare needs at least two saved runs")
    runs = [load_benchmark(path) for path in files]
    names = _names(files)
    print(compare_runs(runs, names))
    if plot:
        print()
        print(plots(runs, names, width=width, color=sys.stdout.isatty()))
    return 0


def _names(files: Sequence[Path]) -> list[str]:
    names = [path.stem for path in files]
    return names if len(set(names)) == len(names) else [str(path) for path in files]


class ProgressLine:
    """A single progress line on a terminal stream, redrawn in place at most 10 times a second."""

    WIDTH = 24

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._last = 0.0
        self._phase = ""
        self._shown = False

    def __call__(self, progress: BenchProgress) -> None:
        now = time.monotonic()
        changed = progress.phase != self._phase
        if not changed and now - self._last < 0.1 and progress.done != progress.total:
            return
        self._last, self._phase = now, progress.phase
        filled = int(self.WIDTH * progress.fraction)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        where = f" {progress.actor} @ {progress.concurrency}" if progress.actor else ""
        errors = f" {progress.errors} errors" if progress.errors else ""
        text = f"[{bar}] {progress.done}/{progress.total} {progress.phase}{where}{errors}"
        self.stream.write("\r" + text[:119].ljust(80))
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
