"""Decode and prefill speed of our torch engine against transformers and (optionally) llama.cpp.

Every measurement runs in a fresh process of its own (this script re-invoked with ``--child``, or
``llama-bench``), so each contender's peak RSS is its own (read from ``wait4``'s rusage). Rounds
alternate the contenders, rotating who goes first, and the median of the rounds is reported, so
background load on a shared machine hits all of them alike. Same GGUF (the bundled SmolLM2-135M
Q4_1), greedy, same thread count.

* decode tok/s: ``--new-tokens`` tokens after a short chat prompt, first token excluded
  (llama-bench's ``tg``: generation from an empty context);
* prefill tok/s: one pass over ``--prefill`` random tokens into an empty cache (llama-bench's ``pp``).

    .venv/bin/python benchmarks/engine_speed.py --threads 1,2
    .venv/bin/python benchmarks/engine_speed.py --threads 1,2 --llama-bench /path/to/llama-bench
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Explain recursion in one paragraph."


# -- children -----------------------------------------------------------------------------------------
def _child(contender: str, threads: int, new_tokens: int, prefill: int) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from workbench.engine import LlamaEngine, SamplingParams, default_smollm2_path

    torch.set_num_threads(threads)
    path = default_smollm2_path()
    rand = torch.randint(100, 40000, (prefill,), generator=torch.Generator().manual_seed(0))
    info: dict[str, Any] = {}
    if contender.startswith("torch"):
        from workbench.engine import DEFAULT_WEIGHTS

        weights = contender.partition(":")[2] or DEFAULT_WEIGHTS
        engine = LlamaEngine.load(path, threads=threads, weights=weights)  # type: ignore[arg-type]
        info["weights"] = engine.weights_note
        ids = engine.chat_input_ids([{"role": "user", "content": PROMPT}])
        model = engine.model

        def prefill_s() -> float:
            cache = model.new_cache(prefill + 1)
            with torch.inference_mode():
                t0 = time.perf_counter()
                model.forward(rand, 0, cache)
                return time.perf_counter() - t0

        def decode_rate() -> float:
            params = SamplingParams(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
            stamps = [(time.perf_counter(), time.process_time()) for _ in engine.generate(ids, params)]
            info["cpu_ms_per_token"] = (stamps[-1][1] - stamps[0][1]) / (len(stamps) - 1) * 1e3
            return (len(stamps) - 1) / (stamps[-1][0] - stamps[0][0])
    else:
        from workbench.engine.reference import load_transformers_reference

        model_hf = load_transformers_reference(path)
        from workbench.engine.tokenizer import EngineTokenizer
        from workbench.engine.gguf_weights import GGUFFile

        tok = EngineTokenizer.from_gguf_metadata(GGUFFile(path).metadata, str(path))
        ids = tok.encode(tok.render_chat([{"role": "user", "content": PROMPT}]))
        x = torch.tensor([ids])

        def prefill_s() -> float:
            with torch.inference_mode():
                t0 = time.perf_counter()
                model_hf(rand[None, :], use_cache=True, logits_to_keep=1)  # as generate() does
                return time.perf_counter() - t0

        def gen(k: int) -> tuple[float, float]:
            with torch.inference_mode():
                t0, c0 = time.perf_counter(), time.process_time()
                model_hf.generate(x, max_new_tokens=k, min_new_tokens=k, do_sample=False, pad_token_id=2)
                return time.perf_counter() - t0, time.process_time() - c0

        def decode_rate() -> float:
            (t1, c1), (tn, cn) = gen(1), gen(new_tokens)
            info["cpu_ms_per_token"] = (cn - c1) / (new_tokens - 1) * 1e3
            return (new_tokens - 1) / (tn - t1)

    prefill_s(), decode_rate()  # warm-up: first-call paths, allocations
    info.update(prefill_tok_s=prefill / prefill_s(), decode_tok_s=decode_rate())
    return info


def _ours(contender: str, threads: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", contender, "--threads", str(threads),
           "--new-tokens", str(args.new_tokens), "--prefill", str(args.prefill)]
    out, peak = _run_child_reaped(cmd)
    row = json.loads(out.strip().splitlines()[-1])
    row["peak_rss_mib"] = peak
    return row


def _llama(binary: str, model: Path, threads: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [binary, "-m", str(model), "-t", str(threads), "-p", str(args.prefill), "-n", str(args.new_tokens),
           "-r", "1", "-o", "json"]
    from workbench import foreign_env

    out, peak = _run_child_reaped(cmd, env=foreign_env())  # our OMP_WAIT_POLICY would cripple its threads
    rows = json.loads(out)
    first = rows[0] if rows else {}
    row: dict[str, Any] = {"peak_rss_mib": peak, "weights": f"build {first.get('build_commit', '?')}, {first.get('model_type', '?')}, {first.get('cpu_info', '')}"}
    for r in rows:
        if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0:
            row["prefill_tok_s"] = r["avg_ts"]
        elif r.get("n_gen", 0) > 0:
            row["decode_tok_s"] = r["avg_ts"]
    return row


def _run_child_reaped(cmd: list[str], env: dict[str, str] | None = None) -> tuple[str, float]:
    """Like :func:`_run_child` but reaps the child with wait4 itself, so the peak RSS is this child's."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... exited with {code}")
    return out, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--llama-bench", metavar="PATH", help="llama.cpp's llama-bench binary, run on the same GGUF")
    ap.add_argument("--no-transformers", action="store_true")
    ap.add_argument("--modes", default="q4q16,q4",
                    help="torch engine weights modes to run, comma list (q4q16: the default, 16-bit activations in "
                         "decode; q4: fp32 math throughout; q4q8: the labelled inexact fast mode)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, int(args.threads), args.new_tokens, args.prefill)))
        return

    sys.path.insert(0, str(ROOT / "src"))
    from workbench.engine import default_smollm2_path

    model = default_smollm2_path()
    contenders = [f"torch:{m}" for m in args.modes.split(",") if m] + ([] if args.no_transformers else ["transformers"]) + (["llama.cpp"] if args.llama_bench else [])
    threads = [int(t) for t in args.threads.split(",")]
    print(f"model {model.name} ({model.stat().st_size / 2**20:.0f} MiB)  prefill {args.prefill}  new tokens {args.new_tokens}"
          f"  rounds {args.rounds}  cores {os.cpu_count()}  load average at start {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for rnd in range(args.rounds):
        for t in threads:
            order = contenders[rnd % len(contenders):] + contenders[: rnd % len(contenders)]
            for c in order:
                row = _llama(args.llama_bench, model, t, args) if c == "llama.cpp" else _ours(c, t, args)
                row["load"] = os.getloadavg()[0]
                results.setdefault((c, t), []).append(row)
                cpu = f"  CPU {row['cpu_ms_per_token']:5.1f} ms/token" if "cpu_ms_per_token" in row else ""
                print(f"  round {rnd + 1} {c:12s} t={t}: decode {row.get('decode_tok_s', 0):6.1f} tok/s{cpu}  prefill "
                      f"{row.get('prefill_tok_s', 0):6.1f} tok/s  peak RSS {row['peak_rss_mib']:5.0f} MiB  load {row['load']:.2f}", flush=True)

    def med(c: str, t: int, key: str) -> float:
        return statistics.median(r.get(key, float("nan")) for r in results[(c, t)])

    print(f"\nmedians of {args.rounds} rounds (load average at end {os.getloadavg()[0]:.2f})")
    ref = "llama.cpp" if args.llama_bench else ("transformers" if "transformers" in contenders else None)
    print("(CPU ms/token: the decoding process's CPU time per token, all its threads; steadier than wall")
    print(" time on a loaded machine. llama-bench reports no CPU time.)")
    print(f"{'threads':>7s} {'runtime':12s} {'decode tok/s':>12s} {'CPU ms/tok':>10s} {'prefill tok/s':>13s} {'peak RSS MiB':>12s}"
          + (f"  {'decode vs ' + ref:>20s} {'prefill vs ' + ref:>20s}" if ref else ""))
    for t in threads:
        for c in contenders:
            d, p, rss = med(c, t, "decode_tok_s"), med(c, t, "prefill_tok_s"), med(c, t, "peak_rss_mib")
            line = f"{t:>7d} {c:12s} {d:12.1f} {med(c, t, 'cpu_ms_per_token'):10.1f} {p:13.1f} {rss:12.0f}"
            if ref:
                line += f"  {d / med(ref, t, 'decode_tok_s'):19.2f}x {p / med(ref, t, 'prefill_tok_s'):19.2f}x"
            print(line)
    for c in contenders:
        notes = {r.get("weights") for rows in (results[(c, t)] for t in threads) for r in rows if r.get("weights")}
        if notes:
            print(f"{c}: {'; '.join(sorted(notes))}")


if __name__ == "__main__":
    main()
