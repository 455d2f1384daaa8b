"""Memory and time to replay a large saved session: the whole file loaded (`load_session`, then
played) against the stream (`stream_session`, as `workbench replay` now reads), side by side.

A session of N chunk events (default 300 000, about 20 MB as saved JSON) is written once; each
contender then plays it at instant speed into /dev/null in its own fresh process, alternated twice,
and reports wall time and peak RSS (`ru_maxrss`). Issue 11's case was 5 M events / 250 MB: 64 s and
4.7 GB with the whole file loaded.

Run: .venv/bin/python benchmarks/replay_memory.py [--events N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import asyncio, math, resource, sys, time
from pathlib import Path
from workbench.commands.replay import play_to_terminal
from workbench.sessions.schema import SessionHeader
from workbench.sessions.store import load_session, stream_session

path, how = Path(sys.argv[1]), sys.argv[2]
started = time.perf_counter()
with open("/dev/null", "w") as out:
    if how == "whole":
        session = load_session(path)
        header = SessionHeader(**session.model_dump(exclude={"events"}))
        asyncio.run(play_to_terminal(header, session.events, math.inf, out))
    else:
        header, events = stream_session(path)
        asyncio.run(play_to_terminal(header, events, math.inf, out))
print(f"{time.perf_counter() - started:.2f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
"""


WRITER = r"""
import sys
from workbench.runtimes.types import ChatMessage
from workbench.sessions.schema import ChatSession, ChunkEvent, PaneRecord, PromptEvent
from workbench.sessions.store import save_session

events = int(sys.argv[2])
chunks = [ChunkEvent(t=index * 0.001, pane="a", correlation_id="c1", text=f" word{index}") for index in range(events)]
session = ChatSession(id="big", name="big", panes=[PaneRecord(id="a", spec="transformers:smollm2")],
                      events=[PromptEvent(t=0.0, pane="a", correlation_id="c1",
                                          message=ChatMessage(role="user", content="go")), *chunks])
save_session(session, sys.argv[1])
"""


def write_session(path: Path, events: int) -> None:
    """In its own process: Linux keeps a process's peak RSS across fork and exec, so this parent must
    stay small for the children's `ru_maxrss` to be their own."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, "-c", WRITER, str(path), str(events)], env=env, check=True)


def measure(path: Path, how: str) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), how], capture_output=True, text=True,
                          env=env, check=True)
    seconds, megabytes = done.stdout.split()
    return float(seconds), float(megabytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.json"
        write_session(path, args.events)
        size_mb = path.stat().st_size / 1e6
        print(f"session: {args.events} events, {size_mb:.1f} MB; threads: 1 per process; "
              f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        results: dict[str, list[tuple[float, float]]] = {"whole": [], "stream": []}
        for _ in range(2):
            for how in ("whole", "stream"):
                results[how].append(measure(path, how))
        for how, runs in results.items():
            print(f"{how:>6}: " + ", ".join(f"{seconds:.2f} s / {megabytes:.0f} MB peak RSS" for seconds, megabytes in runs))
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
