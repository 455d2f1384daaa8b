"""`workbench replay FILE`: play a saved session back in the terminal, or re-run its prompts.

Playback prints each pane's turns with the tokens appearing at their recorded times (divided by
`--speed`; `--instant` for no waiting), every line labelled by its pane, and each answer's figures
under it. `--rerun` sends the prompts again (to the recorded actors, or to `--actor SPEC ...`) and
prints recorded and new answers side by side with their TTFT and tokens/s.

Playback and `--json` stream the file (`stream_session`): events are read, validated and printed one
at a time, so memory stays flat however long the session; the header comes first, and the turn
count and duration are printed at the end. `--rerun` loads the session whole (bounded by the
256 MB file limit), since it keeps every turn to compare.

On a terminal, control characters from the file (escape sequences that retitle the window or clear
the screen, carriage returns that overwrite lines) are removed from everything printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import shutil
import sys
import textwrap
from pathlib import Path
from collections.abc import Iterable
from typing import Any, TextIO

from workbench.metrics.request import RequestMetrics
from workbench.runtimes.types import GenerationOptions
from workbench.sessions.playback import SessionPlayer, Turn, transcript, transcript_events
from workbench.sessions.rerun import RerunProgress, RerunResult, rerun_session
from workbench.sessions.schema import (
    CancelledEvent,
    ChatSession,
    ChunkEvent,
    DoneEvent,
    ErrorEvent,
    PaneEvent,
    PromptEvent,
    SessionEvent,
    SessionHeader,
)
from workbench.sessions.store import default_sessions_dir, load_session, stream_session


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be a number, not {text!r}") from None
    if math.isnan(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"speed must be more than 0, not {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "replay", help="play a saved session back, or re-run its prompts against actors",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("file", type=Path, help="a saved session (.json) or a journal (.journal.jsonl)")
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument("--speed", type=_speed, default=1.0, metavar="X",
                        help="play X times faster than recorded (default 1)")
    timing.add_argument("--instant", action="store_true", help="play without waiting")
    parser.add_argument("--rerun", action="store_true", help="send the prompts again and compare the answers")
    parser.add_argument("--actor", dest="rerun_actors", action="append", default=[], metavar="SPEC",
                        help="actor for the re-run: one for every pane, or one per pane in order "
                             "(default: the recorded ones); implies --rerun")
    parser.add_argument("--max-tokens", type=_positive_int, metavar="N", help="cap each re-run answer at N tokens")
    parser.add_argument("--json", action="store_true", help="print the turns (or the comparison) as JSON")
    parser.set_defaults(handler=run)


# Whole escape sequences first (so no stray "[2J" is left), then any other C0/C1 control except \t, \n.
_ESCAPE_SEQUENCE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """`text` without terminal escape sequences or control characters (tabs and newlines stay)."""
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))


class TerminalSafeWriter:
    """A text stream that writes through `terminal_safe`: what a file holds cannot drive the
    terminal. Each write is cleaned whole, and a sequence split across writes loses its ESC, so it
    is printed as harmless text at worst."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(terminal_safe(text))

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()


def _for_terminal(stream: TextIO) -> TextIO:
    return TerminalSafeWriter(stream) if stream.isatty() else stream  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    out, err = _for_terminal(sys.stdout), _for_terminal(sys.stderr)
    if args.rerun or args.rerun_actors:
        session = load_session(args.file)
        options = GenerationOptions(max_tokens=args.max_tokens) if args.max_tokens else None
        folder = Path(args.sessions) if getattr(args, "sessions", None) else default_sessions_dir()
        result = asyncio.run(_rerun(session, args.rerun_actors or None, folder, options, quiet=args.json, err=err))
        if args.json:
            print(json.dumps(_comparison_json(result, args.file), indent=1, ensure_ascii=False), file=out)
        else:
            print_comparison(result, out)
        return 0
    header, events = stream_session(args.file)
    if args.json:
        print(json.dumps(_transcript_json(header, events, args.file), indent=1, ensure_ascii=False), file=out)
        return 0
    speed = math.inf if args.instant else args.speed
    asyncio.run(play_to_terminal(header, events, speed, out))
    return 0


# ----- playback -----------------------------------------------------------------------------------------
def format_metrics(metrics: RequestMetrics | None) -> str:
    return metrics.describe() if metrics is not None else "no metrics"


class _TerminalPlayback:
    """Writes events as they come, starting a new labelled line whenever the pane (or the kind of
    text) changes, so interleaved panes stay readable."""

    def __init__(self, out: TextIO, *, flush_each: bool = True) -> None:
        self.out = out
        self.flush_each = flush_each  # at instant speed into a file or pipe, one flush at the end will do
        self.line: tuple[str, str] | None = None  # (pane, "answer" | "thinking") of the open line
        self.turns = 0
        self.duration_s = 0.0

    def header(self, header: SessionHeader) -> None:
        name = header.name or header.id
        self.out.write(f"session {name} · {header.created_at:%Y-%m-%d %H:%M}\n")
        for pane in header.panes:
            title = f" ({pane.title})" if pane.title else ""
            self.out.write(f"  [{pane.id}] {pane.spec}{title}\n")

    def event(self, event: SessionEvent) -> None:
        label = f"[{event.pane}]"
        self.duration_s = max(self.duration_s, event.t)
        if isinstance(event, PromptEvent):
            self.turns += 1
            self._say(f"{label} > {event.message.text}" + (f"  ({event.operation})" if event.operation != "chat" else ""))
        elif isinstance(event, ChunkEvent):
            if event.thinking:
                self._stream(event.pane, "thinking", event.thinking)
            if event.text:
                self._stream(event.pane, "answer", event.text)
        elif isinstance(event, DoneEvent):
            self._say(f"{label} -- {format_metrics(event.metrics)}")
        elif isinstance(event, ErrorEvent):
            kind = f" ({event.error_type})" if event.error_type else ""
            self._say(f"{label} error{kind}: {event.error}")
        elif isinstance(event, CancelledEvent):
            self._say(f"{label} cancelled")
        elif isinstance(event, PaneEvent):
            self._say(f"{label} pane opened on {event.record.spec}")
        if self.flush_each:
            self.out.flush()

    def finish(self) -> None:
        self._end_line()
        self.out.flush()

    def totals(self) -> None:
        self.out.write(f"-- {self.turns} turns · {self.duration_s:.1f} s\n")
        self.out.flush()

    def _stream(self, pane: str, kind: str, text: str) -> None:
        prefix = f"[{pane}] " + ("(thinking) " if kind == "thinking" else "")
        if self.line != (pane, kind):
            self._end_line()
            self.out.write(prefix)
            self.line = (pane, kind)
        self.out.write(text.replace("\n", "\n" + prefix))

    def _say(self, text: str) -> None:
        self._end_line()
        self.out.write(text + "\n")

    def _end_line(self) -> None:
        if self.line is not None:
            self.out.write("\n")
            self.line = None


async def play_to_terminal(header: SessionHeader, events: Iterable[SessionEvent], speed: float, out: TextIO) -> None:
    """Print the header, then each event as its time comes, then the totals; events stream."""
    printer = _TerminalPlayback(out, flush_each=not math.isinf(speed) or out.isatty())
    printer.header(header)
    try:
        async for event in SessionPlayer.streaming(events).play(speed):
            printer.event(event)
    finally:
        printer.finish()
    printer.totals()


def _turn_json(turn: Turn) -> dict[str, Any]:
    metrics = turn.metrics
    return {
        "index": turn.index,
        "operation": turn.operation,
        "prompt": turn.prompt.text,
        "answer": turn.text,
        "thinking": turn.thinking,
        "status": turn.status,
        "error": turn.error,
        "ttft_s": metrics.ttft_s if metrics else None,
        "e2e_s": metrics.e2e_s if metrics else None,
        "output_tokens": metrics.output_tokens if metrics else None,
        "output_tokens_per_s": metrics.output_tokens_per_s if metrics else None,
    }


def _transcript_json(header: SessionHeader, events: Iterable[SessionEvent], path: Path) -> dict[str, Any]:
    panes = {pane.id: pane for pane in header.panes}
    turns = transcript_events(panes, events)
    return {
        "file": str(path),
        "id": header.id,
        "name": header.name,
        "created_at": header.created_at.isoformat(),
        "panes": [
            {"id": pane.id, "spec": pane.spec, "title": pane.title,
             "turns": [_turn_json(turn) for turn in turns.get(pane.id, [])]}
            for pane in panes.values()
        ],
    }


# ----- re-run -------------------------------------------------------------------------------------------
async def _rerun(
    session: ChatSession, actors: list[str] | None, folder: Path, options: GenerationOptions | None, *, quiet: bool,
    err: TextIO,
) -> RerunResult:
    counts = {pane: len(turns) for pane, turns in transcript(session).items()}

    def progress(event: RerunProgress) -> None:
        if quiet or event.kind != "finished" or event.turn is None:
            return
        print(f"[{event.pane}] turn {event.index + 1}/{counts.get(event.pane, 0)}: {event.turn.status}",
              file=err, flush=True)

    return await rerun_session(session, actors, folder=folder, options=options, on_progress=progress)


def _answer(turn: Turn) -> str:
    if turn.status == "error":
        return f"[error] {turn.error}" + (f"\n{turn.text}" if turn.text else "")
    if turn.status == "cancelled":
        return f"[cancelled] {turn.text}"
    return turn.text if turn.status == "done" else f"[unfinished] {turn.text}"


def _figures(turn: Turn) -> str:
    return format_metrics(turn.metrics) if turn.ok else turn.status


def _columns(left: str, right: str, width: int) -> list[str]:
    def wrap(text: str) -> list[str]:
        lines: list[str] = []
        for paragraph in text.splitlines() or [""]:
            lines.extend(textwrap.wrap(paragraph, width) or [""])
        return lines

    left_lines, right_lines = wrap(left), wrap(right)
    rows = max(len(left_lines), len(right_lines))
    left_lines += [""] * (rows - len(left_lines))
    right_lines += [""] * (rows - len(right_lines))
    return [f"  {a:<{width}} | {b}".rstrip() for a, b in zip(left_lines, right_lines, strict=True)]


def print_comparison(result: RerunResult, out: TextIO) -> None:
    """Recorded and new answers side by side, turn by turn, pane by pane."""
    width = max(20, (shutil.get_terminal_size((100, 24)).columns - 5) // 2)
    recorded_specs = {pane.id: pane.spec for pane in result.original.all_panes()}
    for pane, comparisons in result.by_pane().items():
        out.write(f"== [{pane}] recorded: {recorded_specs.get(pane, '?')}  |  re-run: {result.specs[pane]}\n")
        for comparison in comparisons:
            out.write(f"turn {comparison.index + 1} > {comparison.prompt.text}\n")
            out.write("\n".join(_columns("recorded", "new", width)) + "\n")
            out.write("\n".join(_columns(_answer(comparison.recorded), _answer(comparison.new), width)) + "\n")
            out.write("\n".join(_columns(_figures(comparison.recorded), _figures(comparison.new), width)) + "\n\n")
    if result.path is not None:
        out.write(f"re-run saved to {result.path} (play it with: workbench replay {result.path})\n")
    out.flush()


def _comparison_json(result: RerunResult, path: Path) -> dict[str, Any]:
    recorded_specs = {pane.id: pane.spec for pane in result.original.all_panes()}
    return {
        "file": str(path),
        "rerun_file": str(result.path) if result.path else None,
        "panes": [
            {"id": pane, "recorded_spec": recorded_specs.get(pane), "rerun_spec": result.specs[pane],
             "turns": [{"prompt": c.prompt.text, "recorded": _turn_json(c.recorded), "new": _turn_json(c.new)}
                       for c in comparisons]}
            for pane, comparisons in result.by_pane().items()
        ],
    }
