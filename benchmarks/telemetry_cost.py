"""What telemetry and the stream log cost per actor message: off, StreamLog on, OpenTelemetry on.

A streaming actor answers each message with `--chunks` chunks (no model: the cost measured is the
actor machinery plus the listeners). Rounds alternate the three setups in one process, so load on
the machine hits them alike; the figure is microseconds of wall time per message (median of rounds).
"Off" must match a run with no listener at all: off means nothing is listening and opentelemetry is
not imported (checked by tests/telemetry/test_otel.py).

    .venv/bin/python benchmarks/telemetry_cost.py               # 5 rounds x 500 messages
    .venv/bin/python benchmarks/telemetry_cost.py --rounds 3 --messages 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from workbench.actors.actor import Actor, Message  # noqa: E402
from workbench.actors.limit import ConcurrencyLimit  # noqa: E402
from workbench.metrics import otel  # noqa: E402
from workbench.metrics.streamlog import StreamLog  # noqa: E402
from workbench.runtimes.types import Chunk  # noqa: E402


class Streamer(Actor):
    def __init__(self, chunks: int) -> None:
        super().__init__("streamer", limit=ConcurrencyLimit(4))
        self.chunks = chunks

    async def handle_say(self, message: Message) -> AsyncIterator[Chunk]:
        for _ in range(self.chunks):
            yield Chunk(text="token ", tokens=1)


async def per_message_us(actor: Streamer, messages: int) -> float:
    start = time.perf_counter()
    for _ in range(messages):
        async for _chunk in actor.send("say", stream=True):
            pass
    return (time.perf_counter() - start) / messages * 1e6


async def main(rounds: int, messages: int, chunks: int) -> None:
    actor = Streamer(chunks)
    await per_message_us(actor, 50)  # warm up
    figures: dict[str, list[float]] = {"off": [], "stream log": [], "otel + stream log": []}
    for _ in range(rounds):
        figures["off"].append(await per_message_us(actor, messages))
        log = StreamLog().install()
        figures["stream log"].append(await per_message_us(actor, messages))
        spans: Any = None
        try:
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

            spans = InMemorySpanExporter()
            otel.enable(span_exporter=spans, metric_reader=InMemoryMetricReader())
            otel.active().watch(actor)
            figures["otel + stream log"].append(await per_message_us(actor, messages))
        except ImportError:
            figures.pop("otel + stream log", None)
        finally:
            otel.disable()
            log.close()
    await actor.stop()
    print(f"threads: {threading.active_count()} (os.cpu_count {os.cpu_count()}), "
          f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{rounds} rounds x {messages} messages x {chunks} chunks, alternated; median µs per message:")
    base = statistics.median(figures["off"])
    for name, values in figures.items():
        median = statistics.median(values)
        print(f"  {name:<18} {median:8.1f} µs  (+{median - base:6.1f} µs)  rounds: "
              + ", ".join(f"{v:.0f}" for v in values))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--chunks", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.messages, args.chunks))
