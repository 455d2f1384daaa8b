"""Accuracy and greedy agreement of the two embedded runtimes of SmolLM2-135M (transformers and our
torch engine) on the built-in scored set: what `workbench bench --agreement` reports, with the thread
count and the load average printed beside the figures (accuracy and agreement do not depend on load;
the speed columns do, and are only comparable within this one run).

    .venv/bin/python benchmarks/accuracy_agreement.py --threads 1 --max-tokens 48
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from workbench.bench.compare import divergence_lines, summary_table  # noqa: E402
from workbench.bench.prompts import load_prompts  # noqa: E402
from workbench.bench.runner import BenchmarkRunner  # noqa: E402
from workbench.runtimes.types import GenerationOptions  # noqa: E402
from workbench.sessions.schema import BenchmarkConfig  # noqa: E402
from workbench.sessions.store import save_benchmark  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", default="transformers:smollm2,torch:smollm2")
    parser.add_argument("--prompts", default="scored")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()
    config = BenchmarkConfig(actors=args.actors.split(","), prompts=args.prompts, concurrency=[1],
                             max_tokens=args.max_tokens, warmup=1, threads=args.threads,
                             options=GenerationOptions(temperature=0.0))
    before = os.getloadavg()
    run = asyncio.run(BenchmarkRunner(config, prompts=load_prompts(args.prompts)).run())
    after = os.getloadavg()
    print(summary_table(run))
    print()
    print("\n".join(divergence_lines(run, per_pair=40)))
    output = args.output or Path(tempfile.gettempdir()) / f"{run.id}.json"
    save_benchmark(run, output)
    print(f"\nthreads {args.threads}, max tokens {args.max_tokens}, {len(run.prompt_set)} prompts, "
          f"load average before {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}, "
          f"after {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}, cores {os.cpu_count()}; saved {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
