"""Our own sampling loop: one prefill pass, then one cached decode step per token.

Tokens are yielded one at a time so callers can stream, and the loop checks a cancel flag before
every step. Stop strings are matched on decoded text; tokens that might be the start of a stop
string are held back until it is clear they are not, so a stop string never leaks into the stream.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from .model import LlamaModel

__all__ = ["SamplingParams", "generate_tokens", "sample_next"]


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. ``temperature == 0`` means greedy (argmax), ignoring top-k/top-p/seed."""

    max_new_tokens: int = 256
    min_new_tokens: int = 0  # stop tokens are masked out until this many tokens exist
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: Sequence[str] = ()
    stop_token_ids: Sequence[int] | None = None  # None: the model's EOS token
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0:
            raise ValueError("max_new_tokens must be >= 0")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")


def sample_next(logits: torch.Tensor, params: SamplingParams, gen: torch.Generator | None) -> int:
    """Pick one token id from a ``[vocab]`` float32 logits vector."""
    if params.temperature == 0.0:
        return int(torch.argmax(logits))
    scores = logits / params.temperature
    if params.top_k > 0 and params.top_k < scores.shape[-1]:
        kth = torch.topk(scores, params.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True)
        probs = torch.softmax(sorted_scores, dim=-1)
        # keep the smallest prefix whose mass reaches top_p (always at least one token)
        drop = (probs.cumsum(-1) - probs) >= params.top_p
        sorted_scores = sorted_scores.masked_fill(drop, float("-inf"))
        scores = torch.full_like(scores, float("-inf")).scatter(0, order, sorted_scores)
    probs = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probs, 1, generator=gen))


def _apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style penalty (divide positive, multiply negative logits of tokens already present)."""
    picked = logits[seen]
    logits = logits.clone()
    logits[seen] = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits


def _longest_stop_prefix(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of some stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


def generate_tokens(
    model: LlamaModel,
    input_ids: Sequence[int] | torch.Tensor,
    params: SamplingParams,
    *,
    cancel: threading.Event | None = None,
    decode: Callable[[list[int]], str] | None = None,
) -> Iterator[int]:
    """Yield new token ids until a stop token/string, ``max_new_tokens``, or ``cancel`` is set.

    ``decode`` (token ids -> text) is needed only when ``params.stop`` is non-empty.
    Stop token ids are not yielded; neither are tokens overlapping a matched stop string.
    """
    ids = torch.as_tensor(input_ids, dtype=torch.long).reshape(-1)
    if ids.numel() == 0:
        raise ValueError("input_ids is empty")
    if params.stop and decode is None:
        raise ValueError("stop strings need a decode function")
    if params.max_new_tokens == 0:
        return
    stop_ids = set(
        params.stop_token_ids
        if params.stop_token_ids is not None
        else ([] if model.config.eos_token_id is None else [model.config.eos_token_id])
    )
    stop_list = torch.tensor(sorted(stop_ids), dtype=torch.long)
    gen: torch.Generator | None = None
    if params.temperature > 0.0:
        gen = torch.Generator()
        gen.manual_seed(params.seed if params.seed is not None else torch.seed())
    stops = [s for s in params.stop if s]
    prompt_len = int(ids.numel())
    cache = model.new_cache(prompt_len + params.max_new_tokens)
    if prompt_len + 1 > cache.capacity:
        raise ValueError(f"prompt of {prompt_len} tokens does not fit the context ({cache.capacity})")
    max_new = min(params.max_new_tokens, cache.capacity - prompt_len)
    penalty = params.repetition_penalty
    seen = ids.clone() if penalty != 1.0 else None

    generated: list[int] = []
    held = 0  # number of trailing generated tokens not yet yielded (possible stop-string start)
    pos = 0
    step_input = ids
    with torch.inference_mode():
        for _ in range(max_new):
            if cancel is not None and cancel.is_set():
                return
            logits = model.forward(step_input, pos, cache)[-1]
            pos += int(step_input.numel())
            if seen is not None:
                logits = _apply_repetition_penalty(logits, seen, penalty)
            if len(generated) < params.min_new_tokens and stop_list.numel():
                logits = logits.index_fill(0, stop_list, float("-inf"))
            token = sample_next(logits, params, gen)
            if token in stop_ids:
                break
            generated.append(token)
            if seen is not None:
                seen = torch.cat([seen, torch.tensor([token])])
            if stops:
                assert decode is not None
                text = decode(generated)
                hit = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
                if hit >= 0:
                    # yield held tokens that end before the stop string begins
                    start = len(generated) - held - 1
                    for j in range(start, len(generated)):
                        if len(decode(generated[: j + 1])) <= hit:
                            yield generated[j]
                        else:
                            break
                    return
                keep = _longest_stop_prefix(text, stops)
                held += 1
                while held and (keep == 0 or len(decode(generated[: len(generated) - held + 1])) <= len(text) - keep):
                    yield generated[len(generated) - held]
                    held -= 1
            else:
                yield token
            step_input = torch.tensor([token])
    # natural end: release anything held back for a stop string that never completed
    for j in range(len(generated) - held, len(generated)):
        yield generated[j]
