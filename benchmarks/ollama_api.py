"""What `workbench serve` and the HTTP actors cost on top of a model, measured side by side.

One actor is served over Ollama's and OpenAI's APIs on loopback; the same prompts then run directly
on the actor and through `ollama-rest`, `ollama-lib`, `ollama-cli` (the stand-in binary in tests/bin)
and `openai` (SSE from /v1/chat/completions), alternated request by request (the order rotates each
round) so machine noise falls on all alike, and the script prints the median end-to-end latency,
TTFT and client-side output tokens/s of each path, and each path's overhead against the direct one,
with the thread count and the load average. `ollama run` has no flags for sampling options, so with
`--spec` the ollama-cli row ignores --max-tokens and runs to the model's own stop: compare its
per-token figures, not its latency.

    .venv/bin/python benchmarks/ollama_api.py                      # a scripted 200-token stream
    .venv/bin/python benchmarks/ollama_api.py --spec transformers:smollm2 --max-tokens 48
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workbench.runtimes.base import ModelRuntimeActor  # noqa: E402
from workbench.runtimes.registry import create_actor  # noqa: E402
from workbench.server.ollama_api import OllamaAPIServer, served_name  # noqa: E402

STAND_IN = ROOT / "tests" / "bin" / "ollama"


async def measure(paths: dict[str, ModelRuntimeActor], prompt: str, runs: int,
                  options: dict) -> dict[str, dict[str, float]]:
    """Each path once per round, the order rotating every round; medians per path."""
    samples: dict[str, dict[str, list[float]]] = {label: {"e2e_s": [], "ttft_s": [], "tok_s": []} for label in paths}
    labels = list(paths)
    for round_index in range(runs):
        order = labels[round_index % len(labels):] + labels[:round_index % len(labels)]
        for label in order:
            metrics = (await paths[label].generate(prompt, options=options)).metrics
            samples[label]["e2e_s"].append(metrics.e2e_s)
            samples[label]["ttft_s"].append(metrics.ttft_s or 0.0)
            samples[label]["tok_s"].append(metrics.output_tokens_per_s or 0.0)
    return {label: {key: statistics.median(values) for key, values in rows.items()} for label, rows in samples.items()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", help="actor to serve (default: a scripted 200-word echo)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()

    if args.spec:
        served = create_actor(args.spec)
        prompt = "Write one sentence about the sea."
        options = {"max_tokens": args.max_tokens, "temperature": 0.0}
    else:
        from tests.support.scripted import ScriptedActor

        served = ScriptedActor("echo")
        prompt = " ".join(f"w{i}" for i in range(200))
        options = {}
    served.start()
    await served.wait_ready()
    async with OllamaAPIServer([served], port=0) as server:
        name = served_name(served)
        paths: dict[str, ModelRuntimeActor] = {"direct": served}
        for kind in ("ollama-rest", "ollama-lib", "ollama-cli", "openai"):
            extra = {"binary": str(STAND_IN)} if kind == "ollama-cli" else {}
            url = f"{server.url}/v1" if kind == "openai" else server.url
            paths[kind] = create_actor(f"{kind}:{name}@{url}", **extra)
        for label, actor in paths.items():
            if label != "direct":
                actor.start()
                await actor.wait_ready()
        await measure(paths, prompt, 1, options)  # warm up every path
        results = await measure(paths, prompt, args.runs, options)
        base = results["direct"]["e2e_s"]
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        print(f"served: {served.spec}; prompt of {len(prompt.split())} words; median of {args.runs} rounds, "
              f"alternated; threads {served.threads} of {os.cpu_count()} CPUs; load average {load}")
        print(f"{'path':<12} {'e2e s':>9} {'ttft s':>9} {'tok/s':>9} {'overhead':>10}")
        for label, row in results.items():
            print(f"{label:<12} {row['e2e_s']:>9.4f} {row['ttft_s']:>9.4f} {row['tok_s']:>9.1f} "
                  f"{(row['e2e_s'] - base) * 1000:>8.1f}ms")
        for label, actor in paths.items():
            if label != "direct":
                await actor.stop()
    await served.stop()


if __name__ == "__main__":
    asyncio.run(main())
