"""In-process speed: direct `model.generate`, the transformers actor, and the torch actor, side by side.

Same prompt (SmolLM2's chat template around it), greedy, 128 new tokens, the same thread count for
all. Direct `generate` and the transformers actor share one loaded model in one child process and
run alternately (A B, B A, A B ...), so the actor's overhead is measured on the same weights, seconds
apart, and machine noise falls on both alike. The torch actor runs in its own child process (its
own weights, its own peak RSS); transformers and torch children alternate round by round. Each
child loads from the converted-GGUF cache and warms up before it measures.

Printed per runtime (median over runs): tokens/s (output tokens / end-to-end time, prefill
included), decode tokens/s (after the first token), TTFT, and the peak RSS of its process; then the
ratios. Targets (issue 3): the transformers actor keeps at least 97% of direct `generate`
throughput; the torch engine is at least 2x the transformers actor.

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
CHILDREN = ("transformers", "torch")
GREEDY = {"temperature": 0}


# ----- children: one process per runtime family ------------------------------------------------------------
def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


async def _actor_run(actor: Any, new_tokens: int) -> dict[str, Any]:
    completion = await actor.chat(PROMPT, options=GREEDY | {"max_tokens": new_tokens})
    metrics = completion.metrics
    return {"tokens": metrics.output_tokens, "e2e_s": metrics.e2e_s, "ttft_s": metrics.ttft_s}


async def transformers_child(threads: int, new_tokens: int, pairs: int) -> dict[str, Any]:
    """Direct generate and the actor on one shared model, alternating."""
    import torch

    from workbench.models import resolve_model
    from workbench.models.loading import load_causal_lm
    from workbench.runtimes.transformers import TransformersRuntimeActor

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

    actor = TransformersRuntimeActor("smollm2", preloaded=loaded, threads=threads)
    actor.start()
    await actor.wait_ready()
    runs: dict[str, list[dict[str, Any]]] = {"direct": [], "transformers": []}
    try:
        generate(8)  # warm-up, both paths
        await actor.chat(PROMPT, options=GREEDY | {"max_tokens": 8})
        for index in range(pairs):
            if index % 2:  # A B, B A, A B ...: neither always runs second
                runs["transformers"].append(await _actor_run(actor, new_tokens))
            _, ttft = generate(1)  # direct's time to first token: prefill and one token
            tokens, e2e = generate(new_tokens)
            runs["direct"].append({"tokens": tokens, "e2e_s": e2e, "ttft_s": ttft})
            if not index % 2:
                runs["transformers"].append(await _actor_run(actor, new_tokens))
        threads_reported = (await actor.stats()).threads
    finally:
        await actor.stop()
    return {"runs": runs, "peak_rss": _peak_rss(), "threads_reported": threads_reported}


async def torch_child(threads: int, new_tokens: int, pairs: int) -> dict[str, Any]:
    from workbench.runtimes.registry import create_actor

    actor = create_actor("torch:smollm2", threads=threads)
    actor.start()
    await actor.wait_ready()
    try:
        await actor.chat(PROMPT, options=GREEDY | {"max_tokens": 8})  # warm-up
        runs = [await _actor_run(actor, new_tokens) for _ in range(pairs)]
        threads_reported = (await actor.stats()).threads
    finally:
        await actor.stop()
    return {"runs": {"torch": runs}, "peak_rss": _peak_rss(), "threads_reported": threads_reported}


# ----- parent: alternate children, summarise ---------------------------------------------------------------
def run_child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", name, "--threads", str(args.threads),
               "--new-tokens", str(args.new_tokens), "--pairs", str(args.pairs)]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"PYTHONWARNINGS": "ignore"})
    if done.returncode != 0:
        raise RuntimeError(f"{name} child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rate(run: dict[str, Any]) -> float:
    return run["tokens"] / run["e2e_s"]


def _decode_rate(run: dict[str, Any]) -> float:
    return (run["tokens"] - 1) / (run["e2e_s"] - run["ttft_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: cores)")
    parser.add_argument("--rounds", type=int, default=3, help="child processes per runtime family")
    parser.add_argument("--pairs", type=int, default=2, help="measured runs per child (A B pairs for transformers)")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--no-torch", action="store_true", help="skip the torch actor")
    parser.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure = transformers_child if args.child == "transformers" else torch_child
        print(json.dumps(asyncio.run(measure(args.threads, args.new_tokens, args.pairs))))
        return

    children = ["transformers"]
    if not args.no_torch and importlib.util.find_spec("workbench.runtimes.torch") is not None:
        children.append("torch")
    print(f"threads={args.threads}  new tokens={args.new_tokens}  rounds={args.rounds} x {args.pairs}  greedy  "
          f"children={', '.join(children)}  cores={os.cpu_count()}  load average={os.getloadavg()[0]:.1f}")
    runs: dict[str, list[dict[str, Any]]] = {}
    rss: dict[str, int] = {}
    for round_index in range(args.rounds):
        for name in children:
            result = run_child(name, args)
            for runtime, measured in result["runs"].items():
                runs.setdefault(runtime, []).extend(measured)
                rss[runtime] = max(rss.get(runtime, 0), result["peak_rss"])
                line = ", ".join(f"{_rate(run):.1f}" for run in measured)
                print(f"  round {round_index + 1} {runtime:<13} tok/s: {line}  "
                      f"(threads reported {result['threads_reported']})", flush=True)

    print(f"\n{'runtime':<13} {'tok/s':>7} {'decode':>7} {'TTFT s':>7} {'peak RSS':>9}  tokens")
    rate: dict[str, float] = {}
    for name, measured in runs.items():
        rate[name] = statistics.median(_rate(run) for run in measured)
        decode = statistics.median(_decode_rate(run) for run in measured)
        ttft = statistics.median(run["ttft_s"] for run in measured)
        tokens = sorted({run["tokens"] for run in measured})
        shared = " (direct and actor share one process)" if name in ("direct", "transformers") else ""
        print(f"{name:<13} {rate[name]:7.1f} {decode:7.1f} {ttft:7.3f} {rss[name] / 2**20:5.0f} MiB  {tokens}{shared}")
    print()
    paired = [_rate(actor) / _rate(direct) for direct, actor in zip(runs["direct"], runs["transformers"], strict=True)]
    print(f"transformers actor / direct generate: median of pairs {statistics.median(paired):.3f}, "
          f"ratio of medians {rate['transformers'] / rate['direct']:.3f} (target >= 0.97)")
    print(f"  pairs: {', '.join(f'{value:.3f}' for value in paired)}")
    if "torch" in rate:
        print(f"torch actor / transformers actor: {rate['torch'] / rate['transformers']:.2f}x (target >= 2x)")
        print(f"torch actor / direct generate: {rate['torch'] / rate['direct']:.2f}x")


if __name__ == "__main__":
    main()
