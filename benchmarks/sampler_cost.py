"""What the ResourceSampler costs: CPU time per wall second, as % of one core, at 2 Hz and 10 Hz.

The sampler watches this process and a child process tree (a parent with three children, as an
Ollama server has its runners). Three phases run side by side in one process, for the same wall
time each: an idle baseline (the event loop running, nothing sampled), then the sampler at 2 Hz,
then at 10 Hz. Two figures per phase:

- process CPU (user + system, `resource.getrusage`) per wall second, minus the idle baseline: what
  the whole process pays, the loop's wake-ups included;
- the sampler's own calls (`time.thread_time` around each `sample_once`, on the loop's thread).

Target: under 1% of one core at 2 Hz.

    .venv/bin/python benchmarks/sampler_cost.py              # 10 s per phase
    .venv/bin/python benchmarks/sampler_cost.py --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from workbench.metrics.sampler import ProcessTarget, ResourceSample, ResourceSampler  # noqa: E402

CHILD = "import time; block = b'x' * (20 * 1024 * 1024); time.sleep(3600)"
TREE = (
    "import subprocess, sys, time; "
    f"children = [subprocess.Popen([sys.executable, '-c', {CHILD!r}]) for _ in range(3)]; "
    "time.sleep(3600)"
)


def process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def phase(seconds: float, rate_hz: float | None, tree_pid: int) -> dict[str, float]:
    """Run the loop for `seconds`, sampling at `rate_hz` (None: the idle baseline)."""
    sampler_cpu = 0.0
    samples = 0
    sampler: ResourceSampler | None = None
    if rate_hz is not None:
        sampler = ResourceSampler(interval_s=1.0 / rate_hz)
        sampler.watch("workbench", ProcessTarget.this_process())
        sampler.watch("server tree", ProcessTarget(tree_pid, include_children=True))
        original: Callable[[], dict[str, ResourceSample]] = sampler.sample_once

        def timed() -> dict[str, ResourceSample]:
            nonlocal sampler_cpu, samples
            before = time.thread_time()
            taken = original()
            sampler_cpu += time.thread_time() - before
            samples += 1
            return taken

        sampler.sample_once = timed  # type: ignore[method-assign]
    wall_start, cpu_start = time.perf_counter(), process_cpu_s()
    if sampler is not None:
        sampler.start()
    await asyncio.sleep(seconds)
    if sampler is not None:
        await sampler.stop()
    wall = time.perf_counter() - wall_start
    cpu = process_cpu_s() - cpu_start
    result = {"wall_s": wall, "process_cpu_pct": 100 * cpu / wall, "sampler_cpu_pct": 100 * sampler_cpu / wall,
              "samples": samples, "per_sample_ms": 1000 * sampler_cpu / samples if samples else 0.0}
    if sampler is not None:
        latest = sampler.series["server tree"].latest
        result["tree_processes"] = latest.processes if latest else 0
        result["tree_rss_mb"] = latest.rss_bytes / 2**20 if latest else 0.0
    return result


async def main(seconds: float) -> None:
    tree = subprocess.Popen([sys.executable, "-c", TREE])
    try:
        await asyncio.sleep(1.0)  # let the children start and allocate
        baseline = await phase(seconds, None, tree.pid)
        runs = {rate: await phase(seconds, rate, tree.pid) for rate in (2.0, 10.0)}
    finally:
        import psutil

        for child in psutil.Process(tree.pid).children(recursive=True):
            child.kill()
        tree.kill()
        tree.wait()
    print(f"ResourceSampler cost, watching this process + a tree of {runs[2.0]['tree_processes']} processes "
          f"({runs[2.0]['tree_rss_mb']:.0f} MB), {seconds:.0f} s per phase")
    print(f"  idle baseline: process CPU {baseline['process_cpu_pct']:.3f}% of one core")
    for rate, run in runs.items():
        extra = run["process_cpu_pct"] - baseline["process_cpu_pct"]
        print(f"  {rate:>4.0f} Hz: {run['samples']:>4} samples, {run['per_sample_ms']:.3f} ms CPU each; "
              f"sampler calls {run['sampler_cpu_pct']:.3f}% of one core; "
              f"process CPU above baseline {extra:.3f}%")
    two_hz = max(runs[2.0]["sampler_cpu_pct"], runs[2.0]["process_cpu_pct"] - baseline["process_cpu_pct"])
    verdict = "meets" if two_hz < 1.0 else "MISSES"
    print(f"  at 2 Hz the sampler costs {two_hz:.3f}% of one core: {verdict} the < 1% target")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="wall time per phase")
    asyncio.run(main(parser.parse_args().seconds))
