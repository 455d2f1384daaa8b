"""Decode speed of our torch engine (each weights mode) against transformers' ``model.generate``.

One process, same prompt, greedy, same thread count. Runs are interleaved round-robin
(``--repeats``) and the median is reported, so background load on a shared machine hits every
contender alike. Decode tok/s excludes the prompt: for transformers it is
``(N - 1) / (t(N tokens) - t(1 token))``; for our engine the time from the first yielded token to
the last. TTFT is prompt -> first token. RSS: resident set after loading each contender and the
process peak so far (``ru_maxrss``), both in MiB.

    .venv/bin/python benchmarks/engine_speed.py --threads 1
    .venv/bin/python benchmarks/engine_speed.py --threads 2 --modes q4,fp32 --new-tokens 128
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from workbench.engine import WEIGHT_MODES, LlamaEngine, SamplingParams, default_smollm2_path  # noqa: E402


def _rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


Runner = Callable[[], tuple[float, float, int]]  # -> (ttft_s, decode_tok_s, tokens)


def _engine_runner(engine: LlamaEngine, ids: list[int], n: int) -> Runner:
    params = SamplingParams(max_new_tokens=n, min_new_tokens=n)

    def run() -> tuple[float, float, int]:
        t0 = time.perf_counter()
        first = last = t0
        count = 0
        for _ in engine.generate(ids, params):
            last = time.perf_counter()
            if count == 0:
                first = last
            count += 1
        return first - t0, (count - 1) / max(last - first, 1e-9), count

    return run


def _hf_runner(model: Any, ids: list[int], n: int) -> Runner:
    x = torch.tensor([ids])

    def gen(k: int) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            model.generate(x, max_new_tokens=k, min_new_tokens=k, do_sample=False, pad_token_id=2)
        return time.perf_counter() - t0

    def run() -> tuple[float, float, int]:
        t1 = gen(1)
        tn = gen(n)
        return t1, (n - 1) / max(tn - t1, 1e-9), n

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--modes", default="q4,fp32", help=f"comma list from {','.join(WEIGHT_MODES)}")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompt", default="Explain recursion in one paragraph.")
    ap.add_argument("--no-transformers", action="store_true", help="skip the transformers baseline")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    path = default_smollm2_path()
    print(f"model: {path.name}  threads: {args.threads}  new tokens: {args.new_tokens}  repeats: {args.repeats}")
    print(f"torch {torch.__version__}  cpu: {torch.backends.cpu.get_cpu_capability()}  cores: {os.cpu_count()}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")

    runners: dict[str, Runner] = {}
    info: dict[str, str] = {}
    ids: list[int] | None = None
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        t0 = time.perf_counter()
        engine = LlamaEngine.load(path, threads=args.threads, weights=mode)  # type: ignore[arg-type]
        load_s = time.perf_counter() - t0
        if ids is None:
            ids = engine.chat_input_ids([{"role": "user", "content": args.prompt}])
        name = f"torch:{engine.weights}"
        runners[name] = _engine_runner(engine, ids, args.new_tokens)
        info[name] = (
            f"load {load_s:5.1f}s  weights {engine.memory_bytes() / 2**20:6.1f} MiB  "
            f"rss {_rss_mib():6.0f} MiB  peak {_peak_mib():6.0f} MiB"
        )
    assert ids is not None, "no modes given"
    if not args.no_transformers:
        from workbench.engine.reference import load_transformers_reference

        t0 = time.perf_counter()
        model = load_transformers_reference(path)
        load_s = time.perf_counter() - t0
        runners["transformers"] = _hf_runner(model, ids, args.new_tokens)
        info["transformers"] = f"load {load_s:5.1f}s  rss {_rss_mib():6.0f} MiB  peak {_peak_mib():6.0f} MiB"
    print(f"prompt tokens: {len(ids)}")
    for name, line in info.items():
        print(f"  {name:14s} {line}")

    for r in runners.values():  # warm-up (allocations, kernel build, first-call paths)
        r()
    results: dict[str, list[tuple[float, float, int]]] = {k: [] for k in runners}
    for _ in range(args.repeats):
        for name, r in runners.items():
            results[name].append(r())

    base = statistics.median(x[1] for x in results["transformers"]) if "transformers" in results else None
    print()
    print(f"{'runtime':14s} {'decode tok/s':>12s} {'min':>7s} {'max':>7s} {'TTFT ms':>8s} {'vs transformers':>16s}")
    for name, rows in results.items():
        rates = [x[1] for x in rows]
        med = statistics.median(rates)
        ttft = statistics.median(x[0] for x in rows) * 1e3
        ratio = f"{med / base:6.2f}x" if base else "-"
        print(f"{name:14s} {med:12.1f} {min(rates):7.1f} {max(rates):7.1f} {ttft:8.1f} {ratio:>16s}")
    print(f"\npeak RSS of this process: {_peak_mib():.0f} MiB; load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
