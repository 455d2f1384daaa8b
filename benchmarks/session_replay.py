"""What recording and playing back a session costs, measured here.

1. Recorder cost per streamed chunk: the time a chunk event takes through an actor's emitter with a
   `SessionRecorder` attached (journal line written and flushed) against the same emitter with no
   listener, side by side in one run; compared with the gap between tokens of the embedded model
   (~35 ms at ~28 tokens/s).
2. Playback timing on the real clock: how late each event is yielded against its scheduled time
   (recorded time / speed), at 1x and 4x, for a session of evenly spaced chunks.

Run: .venv/bin/python benchmarks/session_replay.py
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from workbench.actors import events
from workbench.actors.events import ActorEvent, EventEmitter
from workbench.metrics.request import percentile
from workbench.runtimes.types import ChatMessage, Chunk
from workbench.sessions.playback import SessionPlayer
from workbench.sessions.recorder import SessionRecorder
from workbench.sessions.schema import ChatSession, ChunkEvent, PaneRecord, PromptEvent

CHUNKS = 5000
TOKEN_GAP_S = 1 / 28


def emit_chunks(emitter: EventEmitter, correlation_id: str, count: int) -> list[float]:
    costs = []
    for index in range(count):
        event = ActorEvent(events.CHUNK, "bench", correlation_id, "chat", Chunk(text=f" word{index}", tokens=1))
        start = time.perf_counter()
        emitter.emit(event)
        costs.append(time.perf_counter() - start)
    return costs


def recorder_cost(folder: Path) -> None:
    bare = EventEmitter()
    watched = EventEmitter()
    recorder = SessionRecorder(folder, "bench", [PaneRecord(id="a", spec="bench:model")])
    recorder.attach("a", watched)
    recorder.record_prompt("a", "go", correlation_id="c1")
    baseline = emit_chunks(bare, "c1", CHUNKS)
    recorded = emit_chunks(watched, "c1", CHUNKS)
    recorder.close()
    size = recorder.journal_path.stat().st_size if recorder.journal_path.exists() else 0
    print(f"recorder cost per chunk ({CHUNKS} chunks, journal {size / 1e6:.2f} MB):")
    for label, costs in (("no listener", baseline), ("recorder attached", recorded)):
        print(f"  {label:<18} p50 {percentile(costs, 50) * 1e6:7.1f} us   p95 {percentile(costs, 95) * 1e6:7.1f} us"
              f"   max {max(costs) * 1e6:8.1f} us")
    stalls = [cost for cost in recorded if cost > 0.001]
    print(f"  chunks over 1 ms (a journal fsync, at most one a second, or the machine's other load):"
          f" {len(stalls)}, total {sum(stalls) * 1e3:.1f} ms; load average {os.getloadavg()[0]:.1f}")
    extra = percentile(recorded, 50) - percentile(baseline, 50)
    print(f"  added per chunk: {extra * 1e6:.1f} us = {extra / TOKEN_GAP_S * 100:.3f}% of a {TOKEN_GAP_S * 1e3:.0f} ms token gap")


async def playback_lateness(speed: float, count: int = 200, gap_s: float = 0.01) -> list[float]:
    session = ChatSession(id="bench", panes=[PaneRecord(id="a", spec="bench:model")], events=[
        PromptEvent(t=0.0, pane="a", correlation_id="c", message=ChatMessage(role="user", content="go")),
        *(ChunkEvent(t=(index + 1) * gap_s, pane="a", correlation_id="c", text="x") for index in range(count)),
    ])
    late = []
    start = time.monotonic()
    async for event in SessionPlayer(session).play(speed):
        late.append(time.monotonic() - start - event.t / speed)
    return late


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        recorder_cost(Path(folder))
    for speed in (1.0, 4.0):
        late = asyncio.run(playback_lateness(speed))
        print(f"playback at {speed:g}x, 200 chunks 10 ms apart: lateness p50 {percentile(late, 50) * 1e3:.2f} ms"
              f"  p95 {percentile(late, 95) * 1e3:.2f} ms  max {max(late) * 1e3:.2f} ms  (never early: {min(late) >= 0})")


if __name__ == "__main__":
    main()
