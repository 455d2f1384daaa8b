"""In-process speed: direct `model.generate`, the transformers actor, and the torch actor, side by side.

Same prompt (SmolLM2's chat template around it), greedy, 128 new tokens, the same thread count for
all. Each measurement runs in its own child process, so each runtime's peak RSS is its own; the
children alternate (direct, transformers, torch, direct, transformers, torch, ...) so drift in
machine load falls on all of them alike. Each child loads the model (from the converted-GGUF
cache), warms up with a short generation, then measures one 128-token generation.

Printed per runtime (median over rounds): tokens/s (output tokens / end-to-end time, prefill
included), decode tokens/s (after the first token), TTFT, peak RSS; then the ratios. The issue's
target: the transformers actor keeps at least 97% of direct `generate` throughput; the torch
engine is at least 2x the transformers actor.

    .venv/bin/python benchmarks/inprocess.py                 # threads = cores, 3 rounds
    .venv/bin/python benchmarks/inprocess.py --threads 1 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PROMPT = "Write a long story about a dragon who learns to bake bread in a small mountain village."
RUNTIMES = ("direct", "transformers", "torch")


# ----- children: one measurement each --------------------------------------------------------------------
def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure_direct(threads: int, new_tokens: int) -> dict[str, Any]:
    import torch

    from workbench.models import resolve_model
    from workbench.models.loading import load_causal_lm

    torch.set_num_threads(threads)
    loaded = load_causal_lm(resolve_model("smollm2"))
    model, tokenizer = loaded.model, loaded.tokenizer
    text = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                         tokenize=False)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    mask = torch.ones_like(ids)

    def generate(count: int) -> tuple[int, float]:
        started = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(ids, attention_mask=mask, max_new_tokens=count, do_sample=False)
        return int(output.shape[1] - ids.shape[1]), time.perf_counter() - started

    generate(8)  # warm-up
    _, ttft = generate(1)
    tokens, e2e = generate(new_tokens)
    return {"tokens": tokens, "e2e_s": e2e, "ttft_s": ttft, "input_tokens": int(ids.shape[1])}


async def _measure_actor(spec: str, threads: int, new_tokens: int) -> dict[str, Any]:
    from workbench.runtimes.registry import create_actor

    actor = create_actor(spec, threads=threads)
    actor.start()
    await actor.wait_ready()
    try:
        await actor.chat(PROMPT, options={"temperature": 0, "max_tokens": 8})  # warm-up
        completion = await actor.chat(PROMPT, options={"temperature": 0, "max_tokens": new_tokens})
        metrics = completion.metrics
        assert metrics is not None
        stats = await actor.stats()
        return {"tokens": metrics.output_tokens, "e2e_s": metrics.e2e_s, "ttft_s": metrics.ttft_s,
                "input_tokens": metrics.input_tokens, "threads_reported": stats.threads}
    finally:
        await actor.stop()


def child(runtime: str, threads: int, new_tokens: int) -> None:
    if runtime == "direct":
        result = measure_direct(threads, new_tokens)
    else:
        result = asyncio.run(_measure_actor(f"{runtime}:smollm2", threads, new_tokens))
    result["peak_rss"] = _peak_rss()
    print(json.dumps(result))


# ----- parent: alternate children, summarise ---------------------------------------------------------------
def run_child(runtime: str, threads: int, new_tokens: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", runtime, "--threads", str(threads),
               "--new-tokens", str(new_tokens)]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"PYTHONWARNINGS": "ignore"})
    if done.returncode != 0:
        raise RuntimeError(f"{runtime} child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _decode_rate(result: dict[str, Any]) -> float:
    return (result["tokens"] - 1) / (result["e2e_s"] - result["ttft_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: cores)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--only", nargs="*", choices=RUNTIMES, help="run only these")
    parser.add_argument("--child", choices=RUNTIMES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.threads, args.new_tokens)
        return

    chosen = [name for name in (args.only or RUNTIMES)
              if name != "torch" or importlib.util.find_spec("workbench.runtimes.torch") is not None]
    print(f"threads={args.threads}  new tokens={args.new_tokens}  rounds={args.rounds}  greedy  "
          f"runtimes={', '.join(chosen)}  cores={os.cpu_count()}  load average={os.getloadavg()[0]:.1f}")
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
    for round_index in range(args.rounds):
        for name in chosen:
            result = run_child(name, args.threads, args.new_tokens)
            results[name].append(result)
            print(f"  round {round_index + 1} {name:<13} {result['tokens'] / result['e2e_s']:6.1f} tok/s "
                  f"({result['tokens']} tokens in {result['e2e_s']:.2f} s, TTFT {result['ttft_s']:.3f} s)",
                  flush=True)

    print(f"\n{'runtime':<13} {'tok/s':>7} {'decode':>7} {'TTFT s':>7} {'peak RSS':>9}  tokens")
    rate: dict[str, float] = {}
    for name, runs in results.items():
        rate[name] = statistics.median(run["tokens"] / run["e2e_s"] for run in runs)
        decode = statistics.median(_decode_rate(run) for run in runs)
        ttft = statistics.median(run["ttft_s"] for run in runs)
        rss = max(run["peak_rss"] for run in runs)
        tokens = sorted({run["tokens"] for run in runs})
        print(f"{name:<13} {rate[name]:7.1f} {decode:7.1f} {ttft:7.3f} {rss / 2**20:7.0f} MiB  {tokens}")
    print()
    if "direct" in rate and "transformers" in rate:
        ratio = rate["transformers"] / rate["direct"]
        paired = [t["tokens"] / t["e2e_s"] / (d["tokens"] / d["e2e_s"])
                  for d, t in zip(results["direct"], results["transformers"], strict=True)]
        print(f"transformers actor / direct generate: {ratio:.3f} (per round: "
              f"{', '.join(f'{value:.3f}' for value in paired)}; target >= 0.97)")
    if "torch" in rate and "transformers" in rate:
        print(f"torch actor / transformers actor: {rate['torch'] / rate['transformers']:.2f}x (target >= 2x)")
    if "torch" in rate and "direct" in rate:
        print(f"torch actor / direct generate: {rate['torch'] / rate['direct']:.2f}x")


if __name__ == "__main__":
    main()
