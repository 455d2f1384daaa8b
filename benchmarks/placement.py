"""Thread vs process placement: speed, latency, start-up and per-actor memory, from one run.

For `transformers:smollm2` and `torch:smollm2`, one actor on a thread of this process and one in a
worker process of its own are loaded side by side (four actors). Each round asks every runtime's
two actors the same greedy prompt, one after the other, alternating which goes first (thread
process, process thread, ...), so machine noise falls on both alike. Printed: median decode tok/s
(after the first token) and median TTFT per placement, the process/thread ratio and the TTFT
difference; each worker's start-to-ready time (spawn, imports, load) beside the load alone; and,
with both process actors loaded at once, each worker's RSS, USS, baseline (before its model loaded)
and model memory (after load − baseline), beside this app process's own RSS, which holds the two
thread-placed models together.

Targets (issue 10): process keeps ≥ 97% of thread decode tok/s and adds ≤ 5 ms to TTFT; the two
workers' memory figures differ as the models do.

With Ray installed, a third column, `ray` (issue 15): the same actors as Ray actors on a private local
Ray instance (or `--ray ADDRESS`), compared with `process` (targets: ≥ 95% of tok/s, TTFT + ≤ 20 ms),
Ray's start-up time, and the memory Ray's own processes (GCS, raylet, agents, idle workers) add.
`--ray none` leaves it out.

    .venv/bin/python benchmarks/placement.py                    # threads = 1, 5 rounds, 64 tokens
    .venv/bin/python benchmarks/placement.py --threads 2 --rounds 7 --tokens 128
    .venv/bin/python benchmarks/placement.py --ray none                          # thread/process only
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PROMPT = "Write a long story about a dragon who learns to bake bread in a small mountain village."
RUNTIMES = ("transformers", "torch")
PLACEMENTS = ("thread", "process")


def mib(value: int | None) -> str:
    return "?" if value is None else f"{value / 2**20:7.1f} MiB"


def ray_own_memory(exclude: set[int]) -> tuple[int, int, int]:
    """RSS, USS and count of Ray's own processes started by this one (not our workers)."""
    import psutil

    from workbench.metrics.memory import read_memory

    rss = uss = count = 0
    for process in psutil.Process().children(recursive=True):
        try:
            if process.pid in exclude or "multiprocessing" in " ".join(process.cmdline()[:4]):
                continue
            reading = read_memory(process.pid)
        except psutil.Error:
            continue
        rss, uss, count = rss + reading.rss_bytes, uss + (reading.uss_bytes or 0), count + 1
    return rss, uss, count


async def load_all(threads: int, placements: tuple[str, ...]) -> tuple[dict[tuple[str, str], Any], dict[tuple[str, str], float]]:
    from workbench.runtimes.registry import create_actor

    actors: dict[tuple[str, str], Any] = {}
    ready_s: dict[tuple[str, str], float] = {}
    for runtime in RUNTIMES:  # one runtime at a time, so start-up times are not two loads fighting
        for placement in placements:
            actor = create_actor(f"{runtime}:smollm2", placement=placement, threads=threads)
            started = time.perf_counter()
            actor.start()
            await actor.wait_ready()
            ready_s[(runtime, placement)] = time.perf_counter() - started
            actors[(runtime, placement)] = actor
    return actors, ready_s


async def ask(actor: Any, tokens: int) -> tuple[float, float]:
    options = {"temperature": 0.0, "max_tokens": tokens}
    completion = await actor.chat(PROMPT, options=options)
    metrics = completion.metrics
    return metrics.decode_tokens_per_s or 0.0, metrics.ttft_s or 0.0


def wire_cost_us(count: int = 20_000) -> float:
    """Microseconds to encode (child side) and validate (app side) one streamed chunk."""
    from workbench.runtimes.placement import wire
    from workbench.runtimes.types import Chunk

    message = wire.ChunkMessage(id=7, chunk=Chunk(text=" Paris", tokens=1))
    started = time.perf_counter()
    for _ in range(count):
        wire.decode_from_worker(wire.encode(message))
    return (time.perf_counter() - started) / count * 1e6


async def main(threads: int, rounds: int, tokens: int, ray_address: str | None) -> None:
    load = os.getloadavg()
    print(f"threads per actor: {threads}   cores: {os.cpu_count()}   rounds: {rounds}   new tokens: {tokens}   "
          f"greedy   load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    placements = PLACEMENTS
    ray_before: tuple[int, int, int] | None = None
    if ray_address is not None:
        from workbench.runtimes.placement.ray import connect_async, set_default_address

        set_default_address(ray_address)
        connection = await connect_async(ray_address)
        ray_before = ray_own_memory(set())
        print(f"Ray ({ray_address}): connect/start {connection.connect_s:.2f} s; its own processes before any "
              f"actor: {ray_before[2]}, RSS {mib(ray_before[0])}, USS {mib(ray_before[1])}")
        placements = (*PLACEMENTS, "ray")
    actors, ready_s = await load_all(threads, placements)
    for actor in actors.values():  # warm-up: first-call allocations and caches
        await ask(actor, 8)
    decode: dict[tuple[str, str], list[float]] = {key: [] for key in actors}
    ttft: dict[tuple[str, str], list[float]] = {key: [] for key in actors}
    for number in range(rounds):  # each placement goes first in turn
        shift = number % len(placements)
        order = placements[shift:] + placements[:shift]
        for runtime in RUNTIMES:
            for placement in order:
                rate, first = await ask(actors[(runtime, placement)], tokens)
                decode[(runtime, placement)].append(rate)
                ttft[(runtime, placement)].append(first)

    print()
    print(f"{'runtime':<13}{'placement':<10}{'decode tok/s':>14}{'TTFT ms':>10}   (median of {rounds})")
    for runtime in RUNTIMES:
        for placement in placements:
            key = (runtime, placement)
            print(f"{runtime:<13}{placement:<10}{statistics.median(decode[key]):>14.2f}"
                  f"{statistics.median(ttft[key]) * 1000:>10.1f}")
        thread_rate = statistics.median(decode[(runtime, "thread")])
        process_rate = statistics.median(decode[(runtime, "process")])
        delta_ms = (statistics.median(ttft[(runtime, "process")]) - statistics.median(ttft[(runtime, "thread")])) * 1000
        print(f"{'':<13}{'process/thread':<24}{process_rate / thread_rate:.1%} of tok/s, TTFT {delta_ms:+.1f} ms "
              f"(targets: >= 97%, <= +5 ms)")
        if "ray" in placements:
            ray_rate = statistics.median(decode[(runtime, "ray")])
            ray_ms = (statistics.median(ttft[(runtime, "ray")]) - statistics.median(ttft[(runtime, "process")])) * 1000
            print(f"{'':<13}{'ray/process':<24}{ray_rate / process_rate:.1%} of tok/s, TTFT {ray_ms:+.1f} ms "
                  f"(targets: >= 95%, <= +20 ms)")

    print()
    print("process transport, machine noise aside (what the token path adds per token):")
    print(f"  wire encode+decode of one chunk message: {wire_cost_us():.1f} us")
    trips = []
    for _ in range(50):
        started = time.perf_counter()
        await actors[("torch", "process")].placement.stats()
        trips.append(time.perf_counter() - started)
    print(f"  pipe round trip to an idle worker (a stats request, median of 50): {statistics.median(trips) * 1000:.2f} ms")

    print()
    print("start-to-ready (start() until wait_ready() returns; for process: spawn + imports + load):")
    for runtime in RUNTIMES:
        placement = actors[(runtime, "process")].placement
        ray_ready = f"   ray {ready_s[(runtime, 'ray')]:6.2f} s" if "ray" in placements else ""
        print(f"  {runtime:<13} thread {ready_s[(runtime, 'thread')]:6.2f} s   process {ready_s[(runtime, 'process')]:6.2f} s"
              f"{ray_ready}   (load alone in the worker {placement.load_time_s:.2f} s)")

    print()
    print("memory with both process actors loaded at once (each read from its own worker pid):")
    for runtime in RUNTIMES:
        memory = (await actors[(runtime, "process")].stats()).memory
        print(f"  {runtime:<13} pid {memory.pid:<7} RSS {mib(memory.rss_bytes)}  USS {mib(memory.uss_bytes)}  "
              f"baseline RSS {mib(memory.baseline_rss_bytes)} USS {mib(memory.baseline_uss_bytes)}  "
              f"model RSS {mib(memory.model_rss_bytes)} USS {mib(memory.model_uss_bytes)}")
    workers: set[int] = set()
    for runtime in RUNTIMES if "ray" in placements else ():
        memory = (await actors[(runtime, "ray")].stats()).memory
        workers.add(memory.pid)
        print(f"  {runtime + ' (ray)':<13} pid {memory.pid:<7} RSS {mib(memory.rss_bytes)}  USS {mib(memory.uss_bytes)}  "
              f"baseline RSS {mib(memory.baseline_rss_bytes)} USS {mib(memory.baseline_uss_bytes)}  "
              f"model RSS {mib(memory.model_rss_bytes)} USS {mib(memory.model_uss_bytes)}  node {memory.node}")
    if ray_before is not None:
        rss, uss, count = ray_own_memory(workers)
        print(f"  {'Ray itself':<13} {count} processes (GCS, raylet, agents, idle workers): RSS {mib(rss)}  USS {mib(uss)}")
    shared = (await actors[("torch", "thread")].stats()).memory
    print(f"  {'app process':<13} pid {shared.pid:<7} RSS {mib(shared.rss_bytes)}  USS {mib(shared.uss_bytes)}  "
          f"(holds both thread-placed models: one figure for two actors)")
    load = os.getloadavg()
    print(f"\nload average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    await asyncio.gather(*(actor.stop() for actor in actors.values()))


if __name__ == "__main__":  # required: spawned workers import this module as __mp_main__
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per actor (default 1)")
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per request (default 64)")
    parser.add_argument("--ray", metavar="ADDRESS", default="local" if importlib.util.find_spec("ray") else "none",
                        help="Ray for the ray column: local (default with Ray installed), auto, ray://HOST:PORT, "
                             "or none")
    arguments = parser.parse_args()
    ray_address = None if arguments.ray == "none" else arguments.ray
    asyncio.run(main(arguments.threads, arguments.rounds, arguments.tokens, ray_address))
