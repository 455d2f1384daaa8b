"""Our own PyTorch inference engine for llama-architecture GGUF models (SmolLM2 and kin).

No transformers anywhere: weights come straight from the GGUF file (:mod:`.gguf_weights`), the
decoder is :mod:`.model`, the generation loop is :mod:`.generate` (sampling with the shared
:mod:`workbench.textgen.sampler`), and the tokenizer and chat template are built from the file's
own metadata (:mod:`.tokenizer`).

Weights modes (``LlamaEngine.load(weights=...)``):

* ``"q4q16"`` (default): the GGUF blocks as stored, multiplied by our C kernels (:mod:`.native`,
  built when the package is installed). Prefill is fp32 math; a decode step rounds each block of
  32 activations to 16-bit integers (each off by at most 1/65534 of its block's largest value) so
  the weights' integers meet them in integer multiply-adds. Measured on 12 chat prompts: greedy
  output equal to transformers' fp32 model for all 128 tokens of every one, logits within 3e-4 of
  the largest logit of ``"q4"``'s; decode 1.2-1.3x ``"q4"``'s speed.
* ``"q4"``: the same blocks and kernels with fp32 math throughout (matches fp32 up to the order of
  additions); the choice when every logit must be fp32's.
* When the kernels cannot be loaded, either mode runs ``"fp32"`` and says so:
  :attr:`LlamaEngine.weights` is the mode that runs, :attr:`LlamaEngine.weights_note` says how and
  why (never a silent fallback).
* ``"fp32"``: everything dequantized to float32; the exact reference, ~4x the memory traffic.
* ``"bf16"``, ``"int4pack"``, ``"int8"``: torch's own bf16 dense / 4-bit / 8-bit CPU kernels;
  they compute in bfloat16 and drift from the fp32 reference after some tokens.
* ``"q4q8"``: decode with 8-bit activations and integer dot products (llama.cpp's method): NOT
  exact (greedy output left fp32's within 1-29 tokens on each of those 12 prompts), and no faster
  than ``"q4q16"`` here; opt-in only, and its ``weights_note`` says INEXACT.
"""

from __future__ import annotations

import gc
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from .generate import PromptCache, SamplingParams, generate_tokens
from .gguf_weights import GGUFError, GGUFFile, default_smollm2_path
from .model import WEIGHT_MODES, LlamaConfig, LlamaModel, WeightsMode
from .native import NativeUnavailable
from .tokenizer import EngineTokenizer

__all__ = [
    "DEFAULT_WEIGHTS",
    "GGUFError",
    "LlamaConfig",
    "LlamaEngine",
    "SamplingParams",
    "WEIGHT_MODES",
    "WeightsMode",
    "default_smollm2_path",
]

ProgressFn = Callable[[float, str], None]
DEFAULT_WEIGHTS: WeightsMode = "q4q16"


class LlamaEngine:
    """A loaded model + tokenizer with a streaming ``generate``; create it with :meth:`load`."""

    def __init__(
        self, model: LlamaModel, tokenizer: EngineTokenizer, path: Path, threads: int, weights: WeightsMode
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.path = path
        self.threads = threads
        self.weights: WeightsMode = weights
        self.requested_weights: WeightsMode = weights
        self.fallback_reason: str | None = None  # why `weights` is not what was asked for
        self.prompt_cache = PromptCache(model)

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        threads: int | None = None,
        weights: WeightsMode = DEFAULT_WEIGHTS,
        progress: ProgressFn | None = None,
    ) -> LlamaEngine:
        """Load a llama GGUF (default: the bundled SmolLM2-135M-Instruct Q4_1).

        ``threads`` sets torch's intra-op threads (default ``os.cpu_count()``); ``progress`` gets
        ``(fraction, message)`` updates. Raises :class:`GGUFError` naming the file when it is
        missing or not a usable GGUF.
        """
        if weights not in WEIGHT_MODES:
            raise ValueError(f"unknown weights mode {weights!r}; choose from {WEIGHT_MODES}")
        gguf_path = Path(path) if path is not None else default_smollm2_path()
        n_threads = max(1, int(threads if threads is not None else (os.cpu_count() or 1)))
        torch.set_num_threads(n_threads)
        report = progress or (lambda _f, _m: None)
        f = GGUFFile(gguf_path)
        report(0.02, "tokenizer")
        tokenizer = EngineTokenizer.from_gguf_metadata(f.metadata, str(gguf_path))
        f.release_header_pages()  # the vocabulary's pages, read again to build the tokenizer
        scaled: ProgressFn = lambda frac, msg: report(0.1 + 0.9 * frac, msg)  # noqa: E731
        try:
            model = LlamaModel.from_gguf(f, weights, scaled)
        except NativeUnavailable as exc:
            fallback = f"{weights} requested, but the C kernels are unavailable: {exc}"
            warnings.warn(f"{fallback}; running fp32 weights", RuntimeWarning, stacklevel=2)
            model = LlamaModel.from_gguf(f, "fp32", scaled)
        else:
            fallback = None
        engine = cls(model, tokenizer, gguf_path, n_threads, model.mode)
        engine.requested_weights, engine.fallback_reason = weights, fallback
        del f  # the header's metadata (the vocabulary read from the map) was only for the tokenizer
        report(0.99, "warming up")
        engine.warm_up()
        engine.release_free_memory()
        return engine

    def release_free_memory(self) -> None:
        """Collect garbage and hand the C heap's free pages back to the system (6 MiB of the
        worker's RSS after loading SmolLM2: the tokenizer build's and the warm-up's leftovers)."""
        gc.collect()
        self.model.release_free_memory()

    def warm_up(self) -> None:
        """Run every per-request step once (template, tokenizer, prefill, decode step, sampler,
        detokenizer) so the first real request pays for no lazy initialisation; the template's
        preamble stays in the prompt cache for the next chat."""
        for text in ("Hi", "Hello there"):  # the second reuses the first's prefix (prefill after a cached start)
            messages = [{"role": "user", "content": text}]
            ids = self.chat_input_ids(messages) if self.tokenizer.chat_template is not None else self.tokenizer.encode(text)
            decoder = self.tokenizer.stream_decoder()
            for token in self.generate(ids, SamplingParams(max_new_tokens=2, min_new_tokens=2)):
                decoder.push(token)
        self.prompt_cache.drop_saved()  # nobody will send the warm-up's prompts; their memory is not kept

    # -- facts -------------------------------------------------------------------------------
    @property
    def config(self) -> LlamaConfig:
        return self.model.config

    @property
    def num_parameters(self) -> int:
        """Logical parameter count (tied embedding counted once)."""
        return self.config.num_parameters

    @property
    def weights_note(self) -> str:
        """Which weights mode runs, on what, and (after a fallback) why: for stats and headers."""
        how = self.model.describe_weights()
        return how if self.fallback_reason is None else f"{how} -- {self.fallback_reason}"

    def memory_bytes(self) -> int:
        """Bytes of weights held (the prompt cache's KV memory is :attr:`PromptCache.nbytes`)."""
        return self.model.weight_bytes()

    def _apply_threads(self) -> None:
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    # -- text helpers ------------------------------------------------------------------------
    def chat_input_ids(self, messages: Iterable[dict[str, Any]], *, add_generation_prompt: bool = True) -> list[int]:
        """Prompt ids for OpenAI-style ``messages`` via the GGUF's chat template."""
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)

    # -- inference ---------------------------------------------------------------------------
    def generate(
        self,
        input_ids: Sequence[int] | torch.Tensor,
        params: SamplingParams | None = None,
        cancel: threading.Event | None = None,
        timings: dict[str, float] | None = None,
    ) -> Iterator[int]:
        """Yield new token ids one at a time (EOS and stop strings are not yielded); `timings` gets
        the first token's `prefill_s` and `first_sample_s`."""
        self._apply_threads()
        return generate_tokens(
            self.model, input_ids, params or SamplingParams(), cancel=cancel, tokenizer=self.tokenizer.backend,
            timings=timings, prompt_cache=self.prompt_cache,
        )

    def generate_text(
        self,
        input_ids: Sequence[int] | torch.Tensor,
        params: SamplingParams | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Like :meth:`generate` but yields text pieces, multi-byte characters kept whole."""
        dec = self.tokenizer.stream_decoder()
        for tid in self.generate(input_ids, params, cancel):
            piece = dec.push(tid)
            if piece:
                yield piece
        tail = dec.flush()
        if tail:
            yield tail

    def hidden_states(self, input_ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states ``[T, hidden]``, float32, for pooling into embeddings."""
        self._apply_threads()
        ids = torch.as_tensor(input_ids, dtype=torch.long).reshape(-1)
        if ids.numel() == 0:
            raise ValueError("input_ids is empty")
        with torch.inference_mode():
            return self.model.hidden_states(ids)

    def embed(self, text: str) -> list[float]:
        """Mean-pooled, L2-normalised final hidden state of ``text``."""
        h = self.hidden_states(self.tokenizer.encode(text) or [self.config.eos_token_id or 0])
        v = h.mean(dim=0)
        return (v / v.norm().clamp_min(1e-12)).tolist()
