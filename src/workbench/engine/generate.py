"""Our own generation loop: one prefill pass, then one cached decode step per token.

Tokens are yielded one at a time so callers can stream, and the loop checks a cancel flag before
every step. Picking a token is the shared :class:`workbench.textgen.sampler.Sampler`. Stop strings
are matched on text with the shared :class:`~workbench.textgen.stops.StopMatcher` over a streaming
detokenizer; a token is yielded once the text it produced is released by the matcher, so a stop
string never leaks into the stream.

``timings`` (optional dict) receives ``prefill_s`` (the prompt's forward pass), ``prefill_cpu_s``
(the CPU time the calling thread spent on it: at one thread, what a quiet machine would take),
``first_sample_s`` (picking the first token) and ``reused_tokens`` for the time-to-first-token
breakdown.

Prompt caching (:class:`PromptCache`): the KV cache of the last generation is kept, with the ids it
holds, and the next prompt that starts the same way only prefills what is new -- the chat template's
system preamble on a fresh chat, the whole earlier conversation on the next turn (llama-server's
``cache_prompt`` does the same). The reused positions are exactly what a full prefill would have
written, so answers do not change; only the time to the first token does.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from workbench.textgen.detokenize import IncrementalDetokenizer
from workbench.textgen.sampler import Sampler, apply_repetition_penalty
from workbench.textgen.stops import StopMatcher

from .model import KVCache, LlamaModel, OneThread

__all__ = ["PromptCache", "SamplingParams", "generate_tokens"]


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
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")
        self.sampler()  # validates temperature, top_p and top_k

    def sampler(self) -> Sampler:
        """A fresh sampler (its own seeded generator) for one generation."""
        return Sampler(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, seed=self.seed)


#: Bytes of earlier prompts' keys/values a :class:`PromptCache` keeps besides its working cache.
SAVED_PROMPTS_BYTES = 32 * 1024 * 1024


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for have, want in zip(a, b):
        if have != want:
            break
        n += 1
    return n


class PromptCache:
    """One model's reusable KV cache and the token ids whose keys/values it holds, in order, plus
    the keys/values of earlier prompts (most recently used first, at most ``saved_bytes``).

    A new prompt reuses the longest prefix it shares with the working cache (the template's
    preamble, the earlier turns of this conversation) or, when longer, with a saved prompt, whose
    keys/values are copied in (about 2 MB and 0.3 ms for a 42-token SmolLM2 prompt). So a prompt
    sent again, or a conversation returned to, is not prefilled again: llama-server's RAM prompt
    cache (``--cache-ram``) does the same, and without it a repeated short prompt took 70 ms to its
    first token here against llama-server's 26 ms. The saved bytes count in :attr:`nbytes`.

    One generation at a time uses it: :meth:`take` hands the cache to a new generation (which then
    owns it) and bumps `epoch`; an older generation that is resumed afterwards fails loudly rather
    than writing over the newer one's cache.
    """

    def __init__(self, model: LlamaModel, saved_bytes: int = SAVED_PROMPTS_BYTES) -> None:
        self._model = model
        self._cache: KVCache | None = None
        self.ids: list[int] = []
        self.epoch = 0
        self.saved_bytes = saved_bytes
        self._saved: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        self._prompt: tuple[int, ...] = ()

    @torch.inference_mode()  # the cache's data is an inference tensor once a generation has grown it
    def take(self, ids: Sequence[int]) -> tuple[KVCache, int, int]:
        """``(cache, reused, epoch)``: ``reused`` leading ids of ``ids`` are already in the cache
        (always fewer than ``len(ids)``: the last prompt token is run to get the next token's logits)."""
        if self._cache is None:
            self._cache = self._model.new_cache(self._model.config.context_length)
        self._save_last_prompt()
        wanted = ids[: len(ids) - 1]
        reused = _common_prefix(self.ids, wanted)
        best_key, best = None, reused
        for key in self._saved:
            shared = _common_prefix(key, wanted)
            if shared > best:
                best_key, best = key, shared
        if best_key is not None:
            self._saved.move_to_end(best_key, last=False)
            self._cache.ensure(best)
            self._cache.data[:, :, :, :best] = self._saved[best_key][:, :, :, :best]
            self.ids = list(wanted[:best])
            reused = best
        else:
            del self.ids[reused:]
        self._prompt = tuple(ids)
        self.epoch += 1
        return self._cache, reused, self.epoch

    def _save_last_prompt(self) -> None:
        """Keep the last prompt's keys/values (still at the front of the working cache) unless kept."""
        prompt, self._prompt = self._prompt, ()
        if not prompt or self._cache is None or prompt in self._saved or tuple(self.ids[: len(prompt)]) != prompt:
            return
        cfg = self._model.config
        size = cfg.num_layers * 2 * cfg.num_kv_heads * len(prompt) * cfg.head_dim * self._cache.data.element_size()
        if size > self.saved_bytes:
            return
        while self._saved and self._saved_nbytes() + size > self.saved_bytes:
            self._saved.popitem(last=True)  # least recently used
        self._saved[prompt] = self._cache.data[:, :, :, : len(prompt)].clone()
        self._saved.move_to_end(prompt, last=False)

    def _saved_nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._saved.values())

    def check(self, epoch: int) -> None:
        """Refuse a generation that no longer owns the cache (a newer one took it)."""
        if epoch != self.epoch:
            raise RuntimeError("a newer generation has taken over this model's KV cache")

    def truncate(self, keep: int) -> None:
        """Forget all but the first ``keep`` ids of the working cache (e.g. keep a template's
        preamble only); the last prompt is saved first, as the next :meth:`take` would have."""
        self._save_last_prompt()
        del self.ids[keep:]
        self.epoch += 1

    def clear(self) -> None:
        """Forget and free the cache and the saved prompts (memory grows with what was seen)."""
        self._cache = None
        self.ids = []
        self._saved.clear()
        self._prompt = ()
        self.epoch += 1

    def drop_saved(self) -> None:
        """Forget the saved prompts, keeping the working cache."""
        self._saved.clear()
        self._prompt = ()

    @property
    def saved_prompts(self) -> int:
        return len(self._saved)

    @property
    def nbytes(self) -> int:
        return (0 if self._cache is None else self._cache.nbytes) + self._saved_nbytes()


def generate_tokens(
    model: LlamaModel,
    input_ids: Sequence[int] | torch.Tensor,
    params: SamplingParams,
    *,
    cancel: threading.Event | None = None,
    tokenizer: Any = None,
    timings: dict[str, float] | None = None,
    prompt_cache: PromptCache | None = None,
) -> Iterator[int]:
    """Yield new token ids until a stop token/string, ``max_new_tokens``, or ``cancel`` is set.

    ``tokenizer`` (a `tokenizers.Tokenizer`) is needed only when ``params.stop`` is non-empty.
    Stop token ids are not yielded; neither are tokens overlapping a matched stop string.
    """
    ids = torch.as_tensor(input_ids, dtype=torch.long).reshape(-1)
    if ids.numel() == 0:
        raise ValueError("input_ids is empty")
    if params.stop and tokenizer is None:
        raise ValueError("stop strings need a tokenizer")
    if params.max_new_tokens == 0:
        return
    stop_ids = set(
        params.stop_token_ids
        if params.stop_token_ids is not None
        else ([] if model.config.eos_token_id is None else [model.config.eos_token_id])
    )
    stop_list = torch.tensor(sorted(stop_ids), dtype=torch.long)
    sampler = params.sampler()
    prompt_len = int(ids.numel())
    if prompt_cache is not None:
        cache, reused, epoch = prompt_cache.take(ids.tolist())
    else:
        cache, reused, epoch = model.new_cache(prompt_len + params.max_new_tokens), 0, 0
    if prompt_len + 1 > cache.capacity:
        raise ValueError(f"prompt of {prompt_len} tokens does not fit the context ({cache.capacity})")
    max_new = min(params.max_new_tokens, cache.capacity - prompt_len)
    penalty = params.repetition_penalty
    seen = ids.clone() if penalty != 1.0 else None
    matcher = StopMatcher(params.stop) if params.stop else None
    detokenizer = IncrementalDetokenizer(tokenizer) if matcher is not None else None
    held: list[tuple[int, int]] = []  # (token, end of its text) not yet yielded: text still held by the matcher
    produced_chars = released_chars = 0

    generated = 0
    pos = reused
    step_input = ids[reused:]
    if timings is not None:
        timings["reused_tokens"] = reused
    with torch.inference_mode():
        for _ in range(max_new):
            if cancel is not None and cancel.is_set():
                return
            started, started_cpu = time.perf_counter(), time.thread_time()
            if prompt_cache is not None:
                prompt_cache.check(epoch)
            logits = model.forward(step_input, pos, cache)[-1]
            if prompt_cache is not None:
                prompt_cache.ids.extend(step_input.tolist())
            sampled, sampled_cpu = time.perf_counter(), time.thread_time()
            pos += int(step_input.numel())
            with OneThread():  # a few small ops: an OpenMP worker woken for them costs more (see OneThread)
                if seen is not None:
                    logits = apply_repetition_penalty(logits, seen, penalty)
                if generated < params.min_new_tokens and stop_list.numel():
                    logits = logits.index_fill(0, stop_list, float("-inf"))
                token = sampler(logits)
            if timings is not None and generated == 0:
                timings["prefill_s"] = sampled - started
                timings["prefill_cpu_s"] = sampled_cpu - started_cpu
                timings["first_sample_s"] = time.perf_counter() - sampled
            if token in stop_ids:
                break
            generated += 1
            if seen is not None:
                seen = torch.cat([seen, torch.tensor([token])])
            if matcher is None:
                yield token
            else:
                assert detokenizer is not None
                piece = detokenizer.push(token)
                produced_chars += len(piece)
                held.append((token, produced_chars))
                released_chars += len(matcher.push(piece))
                while held and held[0][1] <= released_chars:
                    yield held.pop(0)[0]
                if matcher.stopped:
                    return
            step_input = torch.tensor([token])
    # natural end: release anything held back for a stop string that never completed
    for token, _ in held:
        yield token
