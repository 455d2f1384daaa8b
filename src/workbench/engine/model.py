"""A llama-architecture decoder in plain PyTorch, built from GGUF weights.

Layout choices are for single-sequence CPU decoding, where per-op Python/dispatch overhead is a
large share of a 135M-parameter model's step time: Q/K/V are one fused projection, gate/up are one
fused projection, rotary embedding is applied to Q and K heads in one go, and the KV cache is one
preallocated tensor written in place. Layers are plain objects, not ``nn.Module``s, because module
``__call__`` machinery costs microseconds per call and we make hundreds of calls per token.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .gguf_weights import GGUFError, GGUFFile, split_q4_0, split_q4_1
from .native import ACTIVATIONS, BLOCK_BYTES, GGML_TYPE_IDS, NativeKernels, load_kernels
from .quant import (
    DenseEmbedding,
    DenseLinear,
    LinearLike,
    NativeBlockEmbedding,
    NativeBlockLinear,
    dense_pays_off,
    int4_from_q4,
    int8_from_float,
)

__all__ = ["KVCache", "LlamaConfig", "LlamaModel", "OneThread", "WeightsMode", "WEIGHT_MODES"]

WeightsMode = Literal["q4", "fp32", "bf16", "int4pack", "int8", "q4q8", "q4q16"]
#: ``q4``: GGUF blocks as stored + our C kernels, fp32 math (matches fp32 up to rounding order).
#: ``fp32``: everything dequantized to float32 (exact reference).
#: ``bf16``/``int4pack``/``int8``: torch's own bf16 / 4-bit / 8-bit CPU kernels (bf16 math, lossy).
#: ``q4q8``: as ``q4``, but decode quantizes activations to 8 bits for integer dot products (llama.cpp's
#: method): faster, NOT exact (greedy output drifts from fp32 after some tokens); never the default.
#: ``q4q16`` (the default, see :mod:`workbench.engine`): as ``q4``, but decode rounds activations to
#: 16 bits per 32-block for integer multiply-adds, each off by at most 1/65534 of its block's largest.
WEIGHT_MODES: tuple[WeightsMode, ...] = ("q4", "fp32", "bf16", "int4pack", "int8", "q4q8", "q4q16")
#: The block modes (our C kernels) and the activation packing of their decode steps.
_MODE_ACTIVATIONS: dict[str, str] = {"q4": "f32", "q4q8": "q8", "q4q16": "q16"}

Embedding = DenseEmbedding | NativeBlockEmbedding

#: A prefill of at most this many new tokens runs on one thread. On this 2-vCPU machine, quiet
#: (load 1.2-1.4), the median of 5 alternated prefills after a 24-token cached prefix took
#: 126/142/189/290 ms on one thread against 161/192/237/251 ms on two for 8/16/32/64 new tokens:
#: splitting a short prefill costs more in hand-offs than the second core gives back. A short chat
#: turn's time to first token is exactly such a prefill.
SERIAL_PREFILL_ROWS = 32


class OneThread:
    """Run a block on one intra-op thread (torch's and, through it, our kernels'), then restore.

    Also for the small torch ops between native decode steps (copying and sampling 49k logits):
    at two threads each of them opened an OpenMP region, whose worker then spun (OpenMP's default
    wait policy, when torch was imported before workbench could set PASSIVE) or was woken (PASSIVE)
    beside our own pool's helper on a 2-vCPU machine. Measured (quiet, 2 threads, 128 tokens):
    59-68 tok/s with the spinning worker, 89-95 woken, against 107-110 with no OpenMP worker.
    """

    def __enter__(self) -> None:
        self.saved = torch.get_num_threads()
        if self.saved != 1:
            torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        if self.saved != 1:
            torch.set_num_threads(self.saved)


ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class LlamaConfig:
    """Model hyper-parameters, read from GGUF ``llama.*`` metadata."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    rope_scale: float
    rms_eps: float
    context_length: int
    tie_embeddings: bool
    bos_token_id: int | None
    eos_token_id: int | None

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> LlamaConfig:
        """Read the config; rejects architectures and rope scalings this decoder does not implement."""
        arch = f.architecture
        if arch != "llama":
            raise GGUFError(f"unsupported architecture {arch!r} in {f.path} (only 'llama')")
        p = "llama."
        hidden = int(f.require(p + "embedding_length"))
        heads = int(f.require(p + "attention.head_count"))
        kv_heads = int(f.get(p + "attention.head_count_kv", heads))
        head_dim = int(f.get(p + "attention.key_length", hidden // heads))
        rope_dim = int(f.get(p + "rope.dimension_count", head_dim))
        if rope_dim != head_dim:
            raise GGUFError(f"partial rotary ({rope_dim} of {head_dim}) is not supported: {f.path}")
        scaling = f.get(p + "rope.scaling.type", "none")
        scale = 1.0
        if scaling == "linear":
            scale = float(f.get(p + "rope.scaling.factor", 1.0))
        elif scaling not in ("none", None):
            raise GGUFError(f"rope scaling {scaling!r} is not supported: {f.path}")
        vocab = f.get(p + "vocab_size")
        if vocab is None:
            tokens = f.get("tokenizer.ggml.tokens")
            vocab = len(tokens) if tokens is not None else f.raw("token_embd.weight").shape[0]
        return cls(
            vocab_size=int(vocab),
            hidden_size=hidden,
            intermediate_size=int(f.require(p + "feed_forward_length")),
            num_layers=int(f.require(p + "block_count")),
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            rope_theta=float(f.get(p + "rope.freq_base", 10000.0)),
            rope_scale=scale,
            rms_eps=float(f.get(p + "attention.layer_norm_rms_epsilon", 1e-5)),
            context_length=int(f.get(p + "context_length", 2048)),
            tie_embeddings=not f.has("output.weight"),
            bos_token_id=_opt_int(f.get("tokenizer.ggml.bos_token_id")),
            eos_token_id=_opt_int(f.get("tokenizer.ggml.eos_token_id")),
        )

    @property
    def num_parameters(self) -> int:
        """Logical parameter count (tied embeddings counted once), as transformers reports it."""
        h, i, d = self.hidden_size, self.intermediate_size, self.head_dim
        attn = h * d * (self.num_heads * 2 + self.num_kv_heads * 2)
        per_layer = attn + 3 * h * i + 2 * h
        head = 0 if self.tie_embeddings else self.vocab_size * h
        return self.vocab_size * h + self.num_layers * per_layer + h + head


def _opt_int(v: object) -> int | None:
    return None if v is None else int(v)  # type: ignore[call-overload]


class KVCache:
    """Keys/values for one sequence, ``[layers, 2, kv_heads, allocated, head_dim]`` float32.

    ``capacity`` is how many positions the sequence may reach; storage starts small and grows by
    a quarter (at least ``STEP`` positions) as the conversation grows (:meth:`ensure`), so a short
    answer does not pay for the model's whole context and at most a quarter is ever unused.
    """

    INITIAL = 128
    STEP = 64

    def __init__(self, config: LlamaConfig, capacity: int, dtype: torch.dtype = torch.float32) -> None:
        self.capacity = capacity
        self._config = config
        self.data = self._alloc(min(capacity, self.INITIAL), dtype)

    def _alloc(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        cfg = self._config
        return torch.zeros(cfg.num_layers, 2, cfg.num_kv_heads, n, cfg.head_dim, dtype=dtype)

    @property
    def allocated(self) -> int:
        return int(self.data.shape[3])

    def ensure(self, positions: int) -> None:
        """Make room for ``positions`` positions (raises past ``capacity``)."""
        if positions > self.capacity:
            raise ValueError(f"sequence of {positions} tokens exceeds the KV cache ({self.capacity})")
        have = self.allocated
        if positions <= have:
            return
        grown = self._alloc(min(self.capacity, max(positions, have + max(self.STEP, have // 4))), self.data.dtype)
        grown[:, :, :, :have] = self.data
        self.data = grown

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()


@dataclass(eq=False)
class _Layer:
    attn_norm: torch.Tensor
    qkv: LinearLike
    o: LinearLike
    ffn_norm: torch.Tensor
    gate_up: LinearLike
    down: LinearLike


class LlamaModel:
    """Weights plus a forward pass over a :class:`KVCache`; no transformers involved."""

    def __init__(
        self,
        config: LlamaConfig,
        embed: Embedding,
        layers: list[_Layer],
        norm: torch.Tensor,
        lm_head: LinearLike,
        mode: WeightsMode,
        *,
        rope_interleaved: bool = False,
    ) -> None:
        """``rope_interleaved``: Q/K rows are in GGUF's order, where llama.cpp's converter interleaved
        each head's two rotary halves, so rotary pairs are (2i, 2i+1) instead of (i, i + d/2).
        Each rotated value is computed exactly as in the rotate-half layout, only stored permuted
        within its head (keys alike, so attention scores are the same sums), which lets the block
        kernels use the mapped file's Q/K rows without a reordered copy."""
        self.config = config
        self.embed = embed
        self.layers = layers
        self.norm = norm
        self.lm_head = lm_head
        self.mode = mode
        self.rope_interleaved = rope_interleaved
        self._rope_len = 0
        self._cos = torch.empty(0)
        self._sin = torch.empty(0)
        self._native = _NativeDecoder.build(self)
        self._kernels = self._native.k if self._native is not None else None

    def _widest_projection(self) -> int:
        """Elements of the largest per-layer projection matrix (the prefill scratch size)."""
        return max(lin.out_features * lin.in_features for L in self.layers for lin in (L.qkv, L.o, L.gate_up, L.down))

    def describe_weights(self) -> str:
        """How the weights are stored and multiplied, e.g. ``q4: Q4_1+Q8_0 blocks, fp32 math, C kernels
        (avx2, extension); decode step in one native call``. Names any projection that is not on
        the mode's kernels, so a partial fallback is visible too."""
        lins: list[LinearLike] = [self.lm_head] + [x for L in self.layers for x in (L.qkv, L.o, L.gate_up, L.down)]
        if self.mode not in _MODE_ACTIVATIONS:
            math = "fp32 math, torch" if self.mode == "fp32" else "bfloat16 math, torch (drifts from fp32)"
            return f"{self.mode}: {math}"
        native = [x for x in lins if isinstance(x, NativeBlockLinear)]
        qtypes = "+".join(sorted({x.qtype for x in native}))
        math = {
            "q4q8": "INEXACT fast mode: decode with 8-bit activations and integer dot products, prefill fp32",
            "q4q16": "decode with 16-bit activations (each within 1/65534 of its block's largest) and integer "
                     "multiply-adds, prefill fp32",
        }.get(self.mode, "fp32 math")
        text = f"{self.mode}: {qtypes} blocks, {math}, {native[0].kernels.describe()}" if native else f"{self.mode}: no block kernels"
        if len(native) < len(lins):
            text += f"; {len(lins) - len(native)} of {len(lins)} projections dequantized to fp32 (unsupported block type)"
        return text + ("; decode step in one native call" if self._native is not None else "; decode layer by layer in torch")

    @property
    def native_decode(self) -> bool:
        """Whether decode steps run as one call into the C kernels."""
        return self._native is not None

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_gguf(
        cls, f: GGUFFile, mode: WeightsMode = "fp32", progress: ProgressFn | None = None
    ) -> LlamaModel:
        """Build every layer in the requested storage ``mode`` (see :mod:`.quant`)."""
        if mode not in WEIGHT_MODES:
            raise ValueError(f"unknown weights mode {mode!r}; choose from {WEIGHT_MODES}")
        cfg = LlamaConfig.from_gguf(f)
        report = progress or (lambda _frac, _msg: None)
        report(0.0, "reading embeddings")
        kernels = load_kernels() if mode in _MODE_ACTIVATIONS else None
        embed: Embedding
        if kernels is not None and f.qtype("token_embd.weight") in BLOCK_BYTES:
            emb_lin = _native_linear(f, ["token_embd.weight"], [None], kernels)
            embed = NativeBlockEmbedding(emb_lin)
        else:
            embed = DenseEmbedding(f.dequantize("token_embd.weight"))
        head_name = "token_embd.weight" if cfg.tie_embeddings else "output.weight"
        # Q/K rows: block kernels use them in the file's interleaved order (no copy; rotary pairs are
        # (2i, 2i+1), see `rope_interleaved`); dense modes un-permute to the rotate-half layout.
        rope_heads: list[int | None] = [None, None, None] if kernels is not None else [cfg.num_heads, cfg.num_kv_heads, None]
        layers: list[_Layer] = []
        for i in range(cfg.num_layers):
            b = f"blk.{i}."
            qkv = _build_linear(
                f,
                [b + "attn_q.weight", b + "attn_k.weight", b + "attn_v.weight"],
                rope_heads,
                mode,
                kernels,
            )
            layers.append(
                _Layer(
                    attn_norm=f.dequantize(b + "attn_norm.weight"),
                    qkv=qkv,
                    o=_build_linear(f, [b + "attn_output.weight"], [None], mode, kernels),
                    ffn_norm=f.dequantize(b + "ffn_norm.weight"),
                    gate_up=_build_linear(
                        f, [b + "ffn_gate.weight", b + "ffn_up.weight"], [None, None], mode, kernels
                    ),
                    down=_build_linear(f, [b + "ffn_down.weight"], [None], mode, kernels),
                )
            )
            report((i + 1) / (cfg.num_layers + 1), f"layer {i + 1}/{cfg.num_layers}")
        lm_head = _build_head(f, head_name, embed if cfg.tie_embeddings else None, mode, kernels)
        norm = f.dequantize("output_norm.weight")
        report(1.0, "weights ready")
        return cls(cfg, embed, layers, norm, lm_head, mode, rope_interleaved=kernels is not None)

    # -- memory ------------------------------------------------------------------------------
    def weight_bytes(self) -> int:
        """Bytes held by weights (embedding table counted once even when tied)."""
        total = self.embed.nbytes + self.norm.numel() * 4
        for layer in self.layers:
            total += layer.attn_norm.numel() * 4 + layer.ffn_norm.numel() * 4
            total += layer.qkv.nbytes + layer.o.nbytes + layer.gate_up.nbytes + layer.down.nbytes
        head = self.lm_head
        emb = self.embed
        shared = (isinstance(head, DenseLinear) and isinstance(emb, DenseEmbedding) and head.weight is emb.table) or (
            isinstance(emb, NativeBlockEmbedding) and head is emb.linear
        )
        if not shared:
            total += head.nbytes
        return total

    def release_free_memory(self) -> None:
        """Return the C heap's free pages to the system (a no-op without the native kernels)."""
        if self._kernels is not None:
            self._kernels.release_free_memory()

    # -- rotary ------------------------------------------------------------------------------
    def _ensure_rope(self, length: int) -> None:
        """cos/sin tables ``[length, head_dim]`` computed the way the reference llama does (fp32)."""
        if length <= self._rope_len:
            return
        cfg = self.config
        length = max(length, 2 * self._rope_len, 256)
        d = cfg.head_dim
        inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        pos = torch.arange(length, dtype=torch.float32) / cfg.rope_scale
        freqs = pos[:, None] * inv_freq[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        self._cos, self._sin = emb.cos(), emb.sin()
        self._rope_len = length

    def new_cache(self, capacity: int) -> KVCache:
        """A cache for up to ``capacity`` positions (capped at the model's context length), grown on use."""
        return KVCache(self.config, min(capacity, self.config.context_length))

    # -- forward -----------------------------------------------------------------------------
    def forward(
        self, ids: torch.Tensor, start: int, cache: KVCache, *, all_logits: bool = False
    ) -> torch.Tensor:
        """Run ``ids`` (1-D) at positions ``start..``; returns logits of the last (or every) position."""
        t = int(ids.shape[0])
        if self._native is not None and not all_logits and not dense_pays_off(t):
            cache.ensure(start + t)
            self._ensure_rope(start + t)
            if t == 1:
                return self._native.step(int(ids[0]), start, cache, self._cos, self._sin)
            return self._native.prefill(ids, start, cache, self._cos, self._sin)
        if 1 < ids.shape[0] <= SERIAL_PREFILL_ROWS and torch.get_num_threads() > 1:
            with OneThread():
                x = self._run_layers(ids, start, cache)
        else:
            x = self._run_layers(ids, start, cache)
        if ids.shape[0] > 1:
            self.release_free_memory()  # the dequantized matrices of the prefill
        if not all_logits:
            x = x[-1:]
        x = _rms_norm(x, self.norm, self.config.rms_eps)
        return self.lm_head(x)

    def hidden_states(self, ids: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states ``[T, hidden]`` for a whole sequence (no cache kept)."""
        cache = self.new_cache(int(ids.shape[0]))
        x = self._run_layers(ids, 0, cache)
        return _rms_norm(x, self.norm, self.config.rms_eps)

    def _run_layers(self, ids: torch.Tensor, start: int, cache: KVCache) -> torch.Tensor:
        cfg = self.config
        t = int(ids.shape[0])
        end = start + t
        cache.ensure(end)
        self._ensure_rope(end)
        nh, nkv, hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        nqk = nh + nkv
        eps = cfg.rms_eps
        cos = self._cos[start:end, None, :]
        sin = self._sin[start:end, None, :]
        half = hd // 2
        cos_lo, cos_hi, sin_lo, sin_hi = cos[..., :half], cos[..., half:], sin[..., :half], sin[..., half:]
        rep = nh // nkv
        scale = 1.0 / math.sqrt(hd)
        mask: torch.Tensor | None = None
        causal = False
        if t > 1:
            if start == 0:
                causal = True
            else:
                mask = torch.ones(t, end, dtype=torch.bool).tril(diagonal=start)
        x = self.embed(ids)
        # one scratch matrix for every projection's dequantized weights in this prefill, instead of
        # a fresh allocation (and its page faults) per matrix
        scratch = torch.empty(self._widest_projection()) if dense_pays_off(t) and self._kernels else None

        def proj(lin: LinearLike, v: torch.Tensor) -> torch.Tensor:
            return lin(v, scratch) if scratch is not None and isinstance(lin, NativeBlockLinear) else lin(v)

        sdpa = F.scaled_dot_product_attention
        cache_data = cache.data
        for i, layer in enumerate(self.layers):
            h = _rms_norm(x, layer.attn_norm, eps)
            qkv = proj(layer.qkv, h).view(t, nqk + nkv, hd)
            qk = qkv[:, :nqk]
            if self.rope_interleaved:
                a, b = qk[..., 0::2], qk[..., 1::2]
                qk = torch.stack([a * cos_lo + (-b) * sin_lo, b * cos_hi + a * sin_hi], dim=-1).flatten(-2)
            else:
                rot = torch.cat([-qk[..., half:], qk[..., :half]], dim=-1)
                qk = qk * cos + rot * sin
            kv_slot = cache_data[i]
            kv_slot[0, :, start:end] = qk[:, nh:].transpose(0, 1)
            kv_slot[1, :, start:end] = qkv[:, nqk:].transpose(0, 1)
            if t == 1:
                # one query: group query heads under their kv head and use two small bmm's,
                # much cheaper than SDPA's kernel setup for a single row
                q = qk[0, :nh].view(nkv, rep, hd)
                scores = torch.bmm(q, kv_slot[0, :, :end].transpose(1, 2)).mul_(scale)
                a = torch.bmm(torch.softmax(scores, dim=-1), kv_slot[1, :, :end]).view(1, nh * hd)
            else:
                q = qk[:, :nh].transpose(0, 1).unsqueeze(0)
                k = kv_slot[0, :, :end].unsqueeze(0)
                v = kv_slot[1, :, :end].unsqueeze(0)
                a = sdpa(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=True)
                a = a.squeeze(0).transpose(0, 1).reshape(t, nh * hd)
            x = x + proj(layer.o, a)
            h = _rms_norm(x, layer.ffn_norm, eps)
            gu = proj(layer.gate_up, h)
            gate, up = gu.chunk(2, dim=-1)
            x = x + proj(layer.down, F.silu(gate) * up)
        return x


class _NativeDecoder:
    """One decode step (a single token) in one call into the C kernels (``wb_decode_step``): every
    layer, the attention over the cache, the final norm and the logits, with no Python or torch op
    between them (at 135M parameters per-op dispatch would cost about as much as the matrix work).
    A short prefill is one call too (``wb_prefill_step``); long prefills (where BLAS wins) and the
    other weights modes use the torch path."""

    def __init__(self, model: LlamaModel, kernels: NativeKernels, ptrs: list[int], qtypes: tuple[int, int, int]) -> None:
        cfg = model.config
        self.cfg = cfg
        self.k = kernels
        self.ptrs = torch.tensor(ptrs, dtype=torch.int64)
        self.cfg_t = torch.tensor(
            [cfg.num_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.num_kv_heads,
             cfg.head_dim, cfg.vocab_size, *qtypes, int(model.rope_interleaved),
             ACTIVATIONS[_MODE_ACTIVATIONS[model.mode]]],
            dtype=torch.int32,
        )
        self.logits = torch.empty(1, cfg.vocab_size)
        self.scratch = torch.empty(0)
        self.lock = threading.Lock()
        self._keep = model  # the pointers above live as long as the model's tensors

    @classmethod
    def build(cls, model: LlamaModel) -> _NativeDecoder | None:
        """A decoder when every projection runs on the block kernels (``q4`` mode) with one
        quantization type per layer stack, else None (the torch path decodes)."""
        emb, head = model.embed, model.lm_head
        if not isinstance(emb, NativeBlockEmbedding) or not isinstance(head, NativeBlockLinear):
            return None
        layer_parts: list[list[torch.Tensor]] = []
        qtypes: set[str] = set()
        for L in model.layers:
            lins = (L.qkv, L.o, L.gate_up, L.down)
            if not all(isinstance(x, NativeBlockLinear) for x in lins):
                return None
            qkv, o, gu, dn = lins  # type: ignore[assignment]
            if len(qkv.parts) != 3 or len(gu.parts) != 2:
                return None
            qtypes.update(x.qtype for x in lins)  # type: ignore[union-attr]
            layer_parts.append([L.attn_norm, L.ffn_norm, *qkv.parts, *o.parts, *gu.parts, *dn.parts])
        if len(qtypes) != 1 or len(head.parts) != 1:
            return None
        for tensors in layer_parts:
            if not all(t.is_contiguous() for t in tensors) or tensors[0].dtype != torch.float32:
                return None
        ptrs = [emb.linear.blocks.data_ptr(), head.blocks.data_ptr(), model.norm.data_ptr()]
        ptrs += [t.data_ptr() for tensors in layer_parts for t in tensors]
        ids = (GGML_TYPE_IDS[emb.linear.qtype], GGML_TYPE_IDS[head.qtype], GGML_TYPE_IDS[qtypes.pop()])
        return cls(model, emb.linear.kernels, ptrs, ids)

    def step(self, token: int, pos: int, cache: KVCache, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        with self.lock:
            need = self.k.decode_scratch_floats(self.cfg_t, cache.allocated)
            if self.scratch.numel() < need:
                self.scratch = torch.empty(need)
            self.k.decode_step(
                self.ptrs, self.cfg_t, self.cfg.rms_eps, token, pos, cache.data, cos, sin, self.scratch,
                self.logits, torch.get_num_threads(),
            )
            with OneThread():
                return self.logits.clone()

    def prefill(self, ids: torch.Tensor, pos: int, cache: KVCache, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """A short prefill (up to ``DENSE_ROWS_PER_THREAD`` rows per thread) in one native call."""
        tokens = ids.to(torch.int32).contiguous()
        with self.lock:
            need = self.k.prefill_scratch_floats(self.cfg_t, cache.allocated, int(tokens.numel()))
            scratch = torch.empty(need)  # per call: a prefill's rows vary, and it is freed after
            self.k.prefill_step(
                self.ptrs, self.cfg_t, self.cfg.rms_eps, tokens, pos, cache.data, cos, sin, scratch,
                self.logits, torch.get_num_threads(),
            )
            with OneThread():
                return self.logits.clone()


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm written out in the reference's order (``F.rms_norm`` is a slower composite here)."""
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _native_linear(
    f: GGUFFile, names: list[str], rope_heads: list[int | None], kernels: NativeKernels
) -> NativeBlockLinear:
    """One kernel-backed projection over the named same-typed tensors. Each part is a view of the
    memory-mapped file, except Q/K rows, which are reordered for the rotate-half rotary layout (a
    copy of those two small matrices)."""
    raws = [f.raw(n, rope_heads=h) for n, h in zip(names, rope_heads)]
    parts = [torch.from_numpy(r.data) for r in raws]
    return NativeBlockLinear(parts, raws[0].qtype, raws[0].shape[1], kernels)


def _build_linear(
    f: GGUFFile,
    names: list[str],
    rope_heads: list[int | None],
    mode: WeightsMode,
    kernels: NativeKernels | None = None,
) -> LinearLike:
    """Fuse the named weights along the output dim, stored as ``mode`` requests."""
    qtypes = {f.qtype(n) for n in names}
    if kernels is not None and len(qtypes) == 1 and next(iter(qtypes)) in BLOCK_BYTES:
        return _native_linear(f, names, rope_heads, kernels)
    if mode == "int4pack" and qtypes <= {"Q4_1", "Q4_0"}:
        qs, ds, ms = [], [], []
        for name, heads in zip(names, rope_heads):
            raw = f.raw(name, rope_heads=heads)
            if raw.qtype == "Q4_1":
                q, d, m = split_q4_1(raw)
            else:
                q, d = split_q4_0(raw)
                m = -8.0 * d  # d*(q-8) == d*q + (-8d)
            qs.append(q)
            ds.append(d)
            ms.append(m)
        return int4_from_q4(torch.cat(qs), torch.cat(ds), torch.cat(ms))
    weight = torch.cat([f.dequantize(n, rope_heads=h) for n, h in zip(names, rope_heads)])
    if mode in ("int8", "int4pack"):
        return int8_from_float(weight)
    if mode == "bf16":
        return DenseLinear(weight.to(torch.bfloat16))
    return DenseLinear(weight)


def _build_head(
    f: GGUFFile, name: str, tied: Embedding | None, mode: WeightsMode, kernels: NativeKernels | None
) -> LinearLike:
    """Output projection. It decides greedy ties, so every mode keeps fp32 accumulation and
    output here (torch's bf16-output kernels round logits to ~0.1 at typical magnitudes)."""
    if isinstance(tied, NativeBlockEmbedding):
        return tied.linear
    if kernels is not None and f.qtype(name) in BLOCK_BYTES:
        return _native_linear(f, [name], [None], kernels)
    if isinstance(tied, DenseEmbedding):
        return DenseLinear(tied.table)
    return DenseLinear(f.dequantize(name))
