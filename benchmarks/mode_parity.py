"""How far each block weights mode's greedy output stays on transformers' fp32 output.

For each of a dozen chat prompts: transformers' fp32 greedy continuation (``--new-tokens``, EOS
masked as ``min_new_tokens`` does) against our engine's in each mode, and the index of the first
token that differs (``=``: none). Then, teacher-forced on ``q4``'s own continuation of four prompts,
the largest difference of each mode's decode-step logits from ``q4``'s (fp32 math), absolute and as
a share of the largest logit. These are the figures behind the modes' descriptions in
:mod:`workbench.engine`.

    .venv/bin/python benchmarks/mode_parity.py --modes q4q16,q4,q4q8 --new-tokens 128
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain recursion in one paragraph.",
    "List three uses of copper.",
    "Translate 'good morning' into Spanish and German.",
    "Write a Python function that reverses a string.",
    "Why is the sky blue?",
    "Give me a recipe for pancakes.",
    "Summarize the plot of Romeo and Juliet.",
    "What is 17 times 23?",
    "Describe a cat to someone who has never seen one.",
    "Tell me a joke about computers.",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="q4q16,q4,q4q8")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from workbench.engine import LlamaEngine, SamplingParams, default_smollm2_path
    from workbench.engine.reference import load_transformers_reference

    torch.set_num_threads(args.threads)
    modes = [m for m in args.modes.split(",") if m]
    engines = {m: LlamaEngine.load(threads=args.threads, weights=m) for m in dict.fromkeys(["q4", *modes])}  # type: ignore[arg-type]
    reference = load_transformers_reference(default_smollm2_path())
    n = args.new_tokens
    params = SamplingParams(max_new_tokens=n, min_new_tokens=n)
    print(f"greedy, {n} new tokens, {args.threads} threads, load average {os.getloadavg()[0]:.2f}")
    print(f"{'prompt':42s} " + " ".join(f"{m:>6s}" for m in modes))
    first_diffs: dict[str, list[int | None]] = {m: [] for m in modes}
    for prompt in PROMPTS:
        ids = engines["q4"].chat_input_ids([{"role": "user", "content": prompt}])
        with torch.inference_mode():
            ref = reference.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                     pad_token_id=2)[0, len(ids):].tolist()
        cells = []
        for m in modes:
            ours = list(engines[m].generate(ids, params))
            diff = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), None)
            first_diffs[m].append(diff)
            cells.append(f"{'=' if diff is None else diff:>6}")
        print(f"{prompt[:42]:42s} " + " ".join(cells), flush=True)
    for m in modes:
        same = sum(d is None for d in first_diffs[m])
        print(f"{m}: equal to transformers' fp32 for all {n} tokens on {same} of {len(PROMPTS)} prompts")

    exact = engines["q4"]
    print("\ndecode-step logits against q4's (fp32 math), teacher-forced, 4 prompts x 32 steps:")
    for m in modes:
        if m == "q4":
            continue
        worst = share = 0.0
        for prompt in PROMPTS[:4]:
            ids = exact.chat_input_ids([{"role": "user", "content": prompt}])
            steps = list(exact.generate(ids, SamplingParams(max_new_tokens=32, min_new_tokens=32)))
            per_engine = []
            with torch.inference_mode():
                for engine in (exact, engines[m]):
                    cache = engine.model.new_cache(len(ids) + len(steps) + 1)
                    engine.model.forward(torch.tensor(ids), 0, cache)
                    per_engine.append(torch.stack([engine.model.forward(torch.tensor([t]), len(ids) + i, cache)[0].clone()
                                                   for i, t in enumerate(steps)]))
            gap = float((per_engine[0] - per_engine[1]).abs().max())
            worst = max(worst, gap)
            share = max(share, gap / float(per_engine[0].abs().max()))
        print(f"  {m}: largest difference {worst:.4f} ({share:.1e} of the largest logit)")


if __name__ == "__main__":
    main()
