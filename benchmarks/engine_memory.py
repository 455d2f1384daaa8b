"""Memory of a ``torch:smollm2`` worker process, and where it goes.

Two measurements, each in a fresh process:

1. **The real worker**: this script creates the ``torch:smollm2`` actor (its model runs in a worker
   process of its own), asks for a ``--new-tokens`` answer, and reads the worker's own peak RSS from
   ``/proc/PID/status`` (``VmHWM``: the kernel's high-water mark, so no sampling can miss a peak),
   its RSS before loading (the actor's baseline) and after.
2. **The engine alone**, step by step in a child process: RSS after importing torch, after reading
   the GGUF header, after building the tokenizer, after loading weights, after prefill and after the
   answer, so each part's share is visible.

Targets (issue 13): peak RSS of the worker <= 400 MiB through a 128-token answer, and model memory
(RSS after load - RSS before) <= 1.3 x the GGUF file size + the KV cache actually used.

    .venv/bin/python benchmarks/engine_memory.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
PROMPT = "Write a long story about a dragon who learns to bake bread in a small mountain village."
MIB = 2**20


def _status_kib(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


# -- 2: the engine alone, step by step ------------------------------------------------------------------
def engine_steps(threads: int, new_tokens: int) -> dict[str, Any]:
    import psutil

    proc = psutil.Process()
    steps: list[tuple[str, float]] = [("python", proc.memory_info().rss / MIB)]
    import torch

    steps.append(("import torch", proc.memory_info().rss / MIB))
    from workbench.engine import LlamaEngine, SamplingParams, default_smollm2_path

    steps.append(("import workbench.engine", proc.memory_info().rss / MIB))
    torch.set_num_threads(threads)
    # LlamaEngine.load itself, sampled at its progress reports, so the figures are the real load's
    # (release of the header pages, the garbage and the C heap's free pages included)
    marks = {"tokenizer": "GGUF header + metadata", "reading embeddings": "tokenizer",
             "warming up": "weights mapped"}

    def progress(_fraction: float, message: str) -> None:
        if message in marks:
            steps.append((marks.pop(message), proc.memory_info().rss / MIB))

    engine = LlamaEngine.load(default_smollm2_path(), threads=threads, progress=progress)  # the default weights mode
    steps.append(("load done (warm-up)", proc.memory_info().rss / MIB))
    model = engine.model
    ids = engine.chat_input_ids([{"role": "user", "content": PROMPT}])
    params = SamplingParams(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    n = 0
    for n, _ in enumerate(engine.generate(ids, params), 1):
        if n == 1:
            steps.append(("prefill + first token", proc.memory_info().rss / MIB))
    steps.append((f"after {n} tokens", proc.memory_info().rss / MIB))
    cfg = model.config
    kv_used = (len(ids) + n) * cfg.num_layers * 2 * cfg.num_kv_heads * cfg.head_dim * 4
    return {
        "steps": steps,
        "peak_mib": _status_kib("self", "VmHWM") / 1024,
        "kv_used_mib": kv_used / MIB,
        "weights_note": engine.weights_note,
    }


# -- 1: the real worker ---------------------------------------------------------------------------------
async def worker(threads: int, new_tokens: int) -> dict[str, Any]:
    from workbench.runtimes.registry import create_actor

    actor = create_actor("torch:smollm2", threads=threads)
    actor.start()
    await actor.wait_ready()
    try:
        stats = await actor.stats()
        if stats.placement is None or stats.memory is None:
            raise SystemExit("the torch actor did not report a worker process")
        pid = stats.placement["pid"]
        after_load = _status_kib(pid, "VmRSS") / 1024
        completion = await actor.chat(PROMPT, options={"temperature": 0, "max_tokens": new_tokens})
        peak = _status_kib(pid, "VmHWM") / 1024
        stats = await actor.stats()
        return {
            "pid": pid,
            "baseline_mib": stats.memory.baseline_rss_bytes / MIB if stats.memory.baseline_rss_bytes else None,
            "after_load_mib": after_load,
            "after_answer_mib": _status_kib(pid, "VmRSS") / 1024,
            "peak_mib": peak,
            "tokens": completion.metrics.output_tokens if completion.metrics else None,
            "prompt_tokens": completion.metrics.input_tokens if completion.metrics else None,
            "weights_note": stats.details.get("weights_note"),
        }
    finally:
        await actor.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--child", choices=["engine", "worker"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "engine":
        print(json.dumps(engine_steps(args.threads, args.new_tokens)))
        return
    if args.child == "worker":
        print(json.dumps(asyncio.run(worker(args.threads, args.new_tokens))))
        return

    from workbench.engine import default_smollm2_path

    gguf_mib = default_smollm2_path().stat().st_size / MIB
    print(f"threads {args.threads}  new tokens {args.new_tokens}  GGUF {gguf_mib:.1f} MiB  load average {os.getloadavg()[0]:.2f}")
    results = {}
    for child in ("worker", "engine"):
        done = subprocess.run([sys.executable, __file__, "--child", child, "--threads", str(args.threads),
                               "--new-tokens", str(args.new_tokens)], capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise SystemExit(f"{child} child failed:\n{done.stderr[-3000:]}")
        results[child] = json.loads(done.stdout.strip().splitlines()[-1])

    eng = results["engine"]
    print("\nengine alone (RSS after each step, MiB):")
    prev = 0.0
    for name, rss in eng["steps"]:
        print(f"  {name:26s} {rss:7.1f}  (+{rss - prev:6.1f})")
        prev = rss
    rss_before = dict(eng["steps"])["import workbench.engine"]
    after_load = dict(eng["steps"])["weights mapped"]
    final = eng["steps"][-1][1]
    budget = 1.3 * gguf_mib + eng["kv_used_mib"]
    print(f"  peak (VmHWM) {eng['peak_mib']:.1f} MiB; KV cache used {eng['kv_used_mib']:.1f} MiB; {eng['weights_note']}")
    print(f"  model memory (after the answer - before loading) {final - rss_before:.1f} MiB"
          f" vs budget 1.3 x GGUF + KV used = {budget:.1f} MiB -> {'met' if final - rss_before <= budget else 'NOT met'}"
          f" (right after load, before weights are touched: {after_load - rss_before:.1f} MiB)")

    w = results["worker"]
    print(f"\ntorch:smollm2 worker process (pid {w['pid']}): {w['prompt_tokens']} prompt + {w['tokens']} answer tokens")
    if w["baseline_mib"] is not None:
        print(f"  RSS before load {w['baseline_mib']:.1f} MiB, after load {w['after_load_mib']:.1f}, after the answer "
              f"{w['after_answer_mib']:.1f}; model memory {w['after_answer_mib'] - w['baseline_mib']:.1f} MiB")
    print(f"  peak RSS (VmHWM) {w['peak_mib']:.1f} MiB vs target 400 MiB -> {'met' if w['peak_mib'] <= 400 else 'NOT met'}")
    print(f"  {w['weights_note']}")


if __name__ == "__main__":
    main()
