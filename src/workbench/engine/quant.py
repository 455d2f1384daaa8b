"""Linear layers over GGUF weights in several storage formats.

Decoding one token is a chain of matrix-vector products, so speed is set by how many weight bytes
cross the memory bus per token and by per-call overhead. fp32 weights cost 4 bytes/param; the
Q4_1 blocks in the file cost 0.625. What this torch build (2.13 CPU, AVX-512) offers, measured here:

* ``_weight_int4pack_mm_for_cpu`` holds Q4_1 blocks of 32 losslessly (``w = (q-8)*s + z`` with
  ``s = d``, ``z = m + 8d``) but is fast only with bfloat16 activations (fp32 input takes a scalar
  path ~30x slower) and returns bfloat16, so every projection carries ~2^-9 relative rounding:
  greedy output drifts from the fp32 reference after tens of tokens (mode ``int4pack``).
* ``_weight_int8pack_mm`` (per-channel int8) is likewise fast only in bfloat16, and requantizing
  32-element groups to one scale per row loses information on top (mode ``int8``).
* Dense fp32 ``F.linear`` is exact and bandwidth-bound (~11 GB/s per core here; mode ``fp32``).

Hence :class:`NativeBlockLinear`: our C kernels (:mod:`.native`) read the raw GGUF blocks and do
fp32 math — the speed of 4-bit storage with fp32-reference results (mode ``q4``; the default
``q4q16`` does the same with 16-bit activations in decode steps, see :mod:`workbench.engine`).

Every layer class takes and returns float32 ``[M, K] -> [M, N]`` and exposes ``nbytes``.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from .native import BLOCK_BYTES, NativeKernels

__all__ = [
    "DenseEmbedding",
    "DenseLinear",
    "NativeBlockEmbedding",
    "NativeBlockLinear",
    "Int4Linear",
    "Int8Linear",
    "LinearLike",
    "int4_from_q4",
    "int8_from_float",
]

_GROUP = 32


class LinearLike(Protocol):
    """A bias-free projection ``y = x @ W.T`` on float32 activations."""

    out_features: int
    in_features: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    @property
    def nbytes(self) -> int: ...


class DenseLinear:
    """Plain ``F.linear`` over a dense weight (fp32 for exactness, bf16 as a cheaper option)."""

    __slots__ = ("weight", "out_features", "in_features")

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight.contiguous()
        self.out_features, self.in_features = (int(s) for s in weight.shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if w.dtype == x.dtype:
            return F.linear(x, w)
        return F.linear(x.to(w.dtype), w).float()

    @property
    def nbytes(self) -> int:
        return self.weight.numel() * self.weight.element_size()


class Int4Linear:
    """Groupwise 4-bit weights via ``aten._weight_int4pack_mm_for_cpu`` (bf16 compute)."""

    __slots__ = ("packed", "scales_zeros", "out_features", "in_features", "_mm")

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> None:
        """``q`` uint8 [N, K] in 0..15, ``scale``/``zero`` [N, K/32]; weight = (q - 8)*scale + zero."""
        n, k = q.shape
        if k % _GROUP:
            raise ValueError(f"in_features {k} is not a multiple of {_GROUP}")
        self.out_features, self.in_features = int(n), int(k)
        self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 1)
        sz = torch.stack([scale.t(), zero.t()], dim=-1)  # [K/32, N, 2]
        self.scales_zeros = sz.to(torch.bfloat16).contiguous()
        self._mm = torch.ops.aten._weight_int4pack_mm_for_cpu

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._mm(x.to(torch.bfloat16), self.packed, _GROUP, self.scales_zeros).float()

    @property
    def nbytes(self) -> int:
        return self.packed.numel() + self.scales_zeros.numel() * 2


class Int8Linear:
    """Per-output-channel int8 weights via ``aten._weight_int8pack_mm`` (bf16 compute)."""

    __slots__ = ("weight", "scales", "out_features", "in_features", "_mm")

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor) -> None:
        self.weight = weight.contiguous()
        self.scales = scales.to(torch.bfloat16).contiguous()
        self.out_features, self.in_features = (int(s) for s in weight.shape)
        self._mm = torch.ops.aten._weight_int8pack_mm

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._mm(x.to(torch.bfloat16), self.weight, self.scales).float()

    @property
    def nbytes(self) -> int:
        return self.weight.numel() + self.scales.numel() * 2


def int4_from_q4(q: torch.Tensor, d: torch.Tensor, m: torch.Tensor | None) -> Int4Linear:
    """Q4_1 (``d*q + m``) or Q4_0 (``d*(q-8)``, ``m=None``) blocks as an :class:`Int4Linear`."""
    zero = torch.zeros_like(d) if m is None else m + 8.0 * d
    return Int4Linear(q, d, zero)


def int8_from_float(weight: torch.Tensor) -> Int8Linear:
    """Symmetric per-row int8 quantization of a float weight."""
    w = weight.float()
    scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return Int8Linear(q, scale)


# -- native GGUF-block kernels (see .native) ------------------------------------------------------

#: Rows per thread up to which the block kernel's many-row path beats dequantizing the matrix to
#: fp32 and calling F.linear (BLAS). Per layer of SmolLM2 here (quiet, load 0.6), kernel against
#: dequantize + F.linear: 1 thread 14 rows 1.71/2.92 ms, 48 rows 5.20/6.02, 64 rows 6.69/6.82,
#: 96 rows 10.3/9.2; 2 threads 96 rows 5.3/7.4, 256 rows 14.7/14.1, 512 rows 30.7/24.6.
DENSE_ROWS_PER_THREAD = 48


def dense_pays_off(rows: int) -> bool:
    """Whether a ``rows``-row product should dequantize the weight and use BLAS (at this thread count)."""
    return rows > DENSE_ROWS_PER_THREAD * torch.get_num_threads()


class NativeBlockLinear:
    """Projection over raw GGUF blocks (Q4_1/Q4_0/Q8_0) with fp32 activations and accumulation.

    ``parts`` are uint8 ``[n_i, row_bytes]`` tensors of one quantization type, stacked along the
    output dimension (Q/K/V or gate/up share one projection for prefill) without being copied
    together, so each part can stay a view of the memory-mapped GGUF file. Up to
    :data:`DENSE_ROWS_PER_THREAD` rows per thread run the block kernels (one row: a dot product per
    block; several: each weight row dequantized once, with gguf-py's exact arithmetic, into a
    cache-resident tile that every row uses); more rows dequantize the whole matrix the same way
    into a scratch matrix and use ``F.linear``. Either way the weights are the fp32 mode's, bit for
    bit; only the order of the additions differs.
    """

    __slots__ = ("parts", "qtype", "out_features", "in_features", "kernels")

    def __init__(self, parts: torch.Tensor | list[torch.Tensor], qtype: str, in_features: int, kernels: NativeKernels) -> None:
        parts = [parts] if isinstance(parts, torch.Tensor) else list(parts)
        row = in_features // _GROUP * BLOCK_BYTES.get(qtype, 0)
        for blocks in parts:
            if blocks.dtype != torch.uint8 or blocks.dim() != 2 or not blocks.is_contiguous():
                raise ValueError("blocks must be contiguous 2-D uint8 tensors of raw GGUF rows")
            if in_features % _GROUP or blocks.shape[1] != row:
                raise ValueError(f"row size {blocks.shape[1]} does not fit {qtype} x {in_features}")
        self.parts = parts
        self.qtype = qtype
        self.out_features = sum(int(b.shape[0]) for b in parts)
        self.in_features = in_features
        self.kernels = kernels

    @property
    def blocks(self) -> torch.Tensor:
        """The raw rows of a single-part projection (the embedding table)."""
        if len(self.parts) != 1:
            raise ValueError("a fused projection has several block tensors")
        return self.parts[0]

    def dequantized(self, scratch: torch.Tensor | None = None) -> torch.Tensor:
        """The weight as float32 ``[N, K]`` (written into ``scratch`` when it is big enough)."""
        size = self.out_features * self.in_features
        if scratch is not None and scratch.numel() >= size:
            out = scratch[:size].view(self.out_features, self.in_features)
        else:
            out = torch.empty(self.out_features, self.in_features)
        row = 0
        for b in self.parts:
            n = int(b.shape[0])
            self.kernels.dequant(self.qtype, b, n, self.in_features, out[row : row + n])
            row += n
        return out

    def __call__(self, x: torch.Tensor, scratch: torch.Tensor | None = None) -> torch.Tensor:
        """``x @ W.T``; ``scratch`` (float32) may hold the dequantized weight for a many-row call."""
        if dense_pays_off(int(x.shape[0])):
            return F.linear(x, self.dequantized(scratch))
        x = x.contiguous()
        outs = [self.kernels.gemm(self.qtype, x, b, int(b.shape[0])) for b in self.parts]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)

    @property
    def nbytes(self) -> int:
        return sum(b.numel() for b in self.parts)


class NativeBlockEmbedding:
    """Token embedding lookup that dequantizes only the requested rows of a block-quantized table."""

    __slots__ = ("linear",)

    def __init__(self, linear: NativeBlockLinear) -> None:
        self.linear = linear

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        lin = self.linear
        rows = lin.blocks.index_select(0, ids)
        return lin.kernels.dequant(lin.qtype, rows, int(ids.shape[0]), lin.in_features, threads=1)

    @property
    def nbytes(self) -> int:
        return self.linear.nbytes


class DenseEmbedding:
    """Plain table lookup."""

    __slots__ = ("table",)

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table[ids]

    @property
    def nbytes(self) -> int:
        return self.table.numel() * self.table.element_size()
