"""The engine's C kernels (``csrc/wbkernels.c``), loaded with ctypes, behind checked Python calls.

Why C: this torch build's 4-bit/8-bit CPU matmuls are fast only with bfloat16 activations and
outputs, enough noise to change greedy choices against an fp32 reference. The kernels read GGUF
Q4_1/Q4_0/Q8_0 blocks as stored, dequantize in registers and accumulate in fp32, so results match
the dequantized fp32 model up to summation order while moving ~6x fewer bytes than fp32 weights;
and :meth:`NativeKernels.decode_step` runs a whole decoder step for one token in one call, so no
per-layer Python or torch dispatch sits between the matrix products.

Where the library comes from (:attr:`NativeKernels.origin`):

* ``extension``: built by ``setup.py`` when the package is installed (``pip install -e .``), next to
  this file as ``_wbkernels<EXT_SUFFIX>``. One build runs on any x86-64: the C picks scalar, AVX2 or
  AVX-512 code at run time (:attr:`NativeKernels.isa`).
* ``source build``: a checkout used without installing (or installed before the extension existed)
  compiles the same source with ``cc`` into workbench's cache folder. ``python setup.py build_ext
  --inplace`` (``make kernels``) is the development rebuild.

If neither works, :func:`load_kernels` raises :class:`NativeUnavailable` with the reason; the
engine reports that reason wherever it says which weights mode runs.

Every wrapper checks dtype, contiguity and shape of the tensors before passing pointers, and the
C side checks sizes again and returns an error code; a bad call raises :class:`KernelError`.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.machinery
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

from ._cache import engine_cache_dir
from .gguf_weights import GGML_TYPES

__all__ = [
    "ACTIVATIONS",
    "BLOCK_BYTES",
    "GGML_TYPE_IDS",
    "KernelError",
    "NativeKernels",
    "NativeUnavailable",
    "kernel_source",
    "load_kernels",
]

#: The block types the kernels multiply: GGML type id (as the C code names them) and bytes per
#: 32-value block, from the one GGML type table.
_KERNEL_QTYPES = ("Q4_1", "Q4_0", "Q8_0")
GGML_TYPE_IDS = {name: type_id for type_id, (name, _, _) in GGML_TYPES.items() if name in _KERNEL_QTYPES}
BLOCK_BYTES = {name: size for name, _, size in GGML_TYPES.values() if name in _KERNEL_QTYPES}
ABI_VERSION = 9
ISA_NAMES = {0: "scalar", 1: "avx2", 2: "avx512"}
_FLAGS = ["-O3", "-pthread", "-fPIC", "-ffp-contract=off"]

_ERRORS = {
    -1: "a null pointer",
    -2: "a dimension is not positive or not a multiple of the 32-element block",
    -3: "a buffer is smaller than its dimensions need",
    -4: "an unknown quantization type",
    -5: "a token id or position out of range",
    -6: "the kernel could not allocate its scratch memory",
    -7: "an inconsistent model configuration",
}


#: Activation packings of the row kernels, as the C code numbers them (ACT_F32, ACT_Q8, ACT_Q16).
ACTIVATIONS = {"f32": 0, "q8": 1, "q16": 2}


class NativeUnavailable(RuntimeError):
    """The C kernels could not be built or loaded on this machine."""


class KernelError(ValueError):
    """A kernel call was refused (bad dtype, layout, shape or range); nothing was written."""


def kernel_source() -> Path:
    """The C source of the kernels (shipped in the package)."""
    return Path(__file__).with_name("csrc") / "wbkernels.c"


def _check(rc: int, what: str) -> None:
    if rc == 0:
        return
    if rc == -6:
        raise MemoryError(f"{what}: {_ERRORS[rc]}")
    raise KernelError(f"{what} refused: {_ERRORS.get(rc, f'error code {rc}')}")


def _require(t: torch.Tensor, name: str, dtype: torch.dtype, dims: int | None = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise KernelError(f"{name} must be a torch.Tensor, not {type(t).__name__}")
    if t.dtype != dtype:
        raise KernelError(f"{name} must be {dtype}, got {t.dtype}")
    if t.device.type != "cpu":
        raise KernelError(f"{name} must be on the CPU, got {t.device}")
    if not t.is_contiguous():
        raise KernelError(f"{name} must be contiguous")
    if dims is not None and t.dim() != dims:
        raise KernelError(f"{name} must be {dims}-D, got shape {tuple(t.shape)}")


def _require_step(
    ptrs: torch.Tensor, cfg: torch.Tensor, kv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
    scratch: torch.Tensor, logits: torch.Tensor,
) -> None:
    """The buffers every whole-model step takes (the C checks their sizes)."""
    _require(ptrs, "ptrs", torch.int64, 1)
    _require(cfg, "cfg", torch.int32, 1)
    _require(kv, "kv cache", torch.float32, 5)
    for t, name in ((cos, "cos"), (sin, "sin"), (scratch, "scratch"), (logits, "logits")):
        _require(t, name, torch.float32)


def _qtype_id(qtype: str) -> int:
    try:
        return GGML_TYPE_IDS[qtype]
    except KeyError:
        raise KernelError(f"unsupported quantization type {qtype!r} (have {sorted(GGML_TYPE_IDS)})") from None


class NativeKernels:
    """Checked entry points into the compiled library."""

    def __init__(self, lib: ctypes.CDLL, origin: str, path: Path) -> None:
        self._lib = lib
        self.origin = origin
        self.path = path
        vp, i, i64, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
        lib.wb_abi_version.restype = i
        if lib.wb_abi_version() != ABI_VERSION:
            raise NativeUnavailable(f"{path} is a stale build (ABI {lib.wb_abi_version()}, need {ABI_VERSION})")
        lib.wb_isa.restype = i
        self.isa = ISA_NAMES.get(lib.wb_isa(), "unknown")
        self._gemm = lib.wb_gemm
        self._gemm.argtypes = [i, vp, i64, i, i, vp, i64, i, vp, i64, i, i]
        self._gemm.restype = i
        self._gemm_act = lib.wb_gemm_act
        self._gemm_act.argtypes = [i, i, vp, i64, i, i, vp, i64, i, vp, i64, i, i]
        self._gemm_act.restype = i
        self._dequant = lib.wb_dequant
        self._dequant.argtypes = [i, vp, i64, i, i, vp, i64, i]
        self._dequant.restype = i
        self._scratch = lib.wb_decode_scratch
        self._scratch.argtypes = [vp, i, i]
        self._scratch.restype = i64
        self._step = lib.wb_decode_step
        self._step.argtypes = [vp, i, vp, i, f, i, i, vp, i64, i, vp, vp, i64, vp, i64, vp, i64, i]
        self._step.restype = i
        self._prefill_scratch = lib.wb_prefill_scratch
        self._prefill_scratch.argtypes = [vp, i, i, i]
        self._prefill_scratch.restype = i64
        self._prefill = lib.wb_prefill_step
        self._prefill.argtypes = [vp, i, vp, i, f, vp, i, i, vp, i64, i, vp, vp, i64, vp, i64, vp, i64, i]
        self._prefill.restype = i
        self._lib.wb_release_free_memory.restype = None

    def release_free_memory(self) -> None:
        """Give the C heap's free pages back to the system (glibc ``malloc_trim``): a prefill's
        dequantized scratch matrices would otherwise stay in the process's RSS."""
        self._lib.wb_release_free_memory()

    def describe(self) -> str:
        return f"C kernels ({self.isa}, {self.origin})"

    # -- matrix products -------------------------------------------------------------------------
    def gemm(
        self, qtype: str, x: torch.Tensor, w: torch.Tensor, n: int, out: torch.Tensor | None = None,
        *, accumulate: bool = False, threads: int | None = None, activations: str = "f32",
    ) -> torch.Tensor:
        """``x[M,K] @ W[n,K].T`` for ``w`` the raw GGUF rows (uint8); adds into ``out`` if ``accumulate``.
        ``activations``: ``"f32"``, or ``"q16"``/``"q8"`` to run the row kernels a ``q4q16``/``q4q8``
        decode step runs, x rounded per 32-block as there."""
        if activations not in ACTIVATIONS:
            raise KernelError(f"activations must be one of {sorted(ACTIVATIONS)}, not {activations!r}")
        qt = _qtype_id(qtype)
        _require(x, "x", torch.float32, 2)
        _require(w, "w", torch.uint8)
        m, k = (int(s) for s in x.shape)
        if out is None:
            if accumulate:
                raise KernelError("accumulate needs an out tensor")
            out = torch.empty(m, n)
        _require(out, "out", torch.float32, 2)
        if tuple(out.shape) != (m, n):
            raise KernelError(f"out must have shape {(m, n)}, got {tuple(out.shape)}")
        if k % 32 or w.numel() != n * (k // 32) * BLOCK_BYTES[qtype]:
            raise KernelError(f"w holds {w.numel()} bytes, not {n} rows of {k} {qtype} values")
        nt = threads or torch.get_num_threads()
        if activations == "f32":
            rc = self._gemm(qt, x.data_ptr(), x.numel(), m, k, w.data_ptr(), w.numel(), n, out.data_ptr(), out.numel(),
                            nt, int(accumulate))
        else:
            rc = self._gemm_act(ACTIVATIONS[activations], qt, x.data_ptr(), x.numel(), m, k, w.data_ptr(), w.numel(),
                                n, out.data_ptr(), out.numel(), nt, int(accumulate))
        _check(rc, f"{qtype} gemm")
        return out

    def dequant(
        self, qtype: str, w: torch.Tensor, n: int, k: int, out: torch.Tensor | None = None, *, threads: int | None = None
    ) -> torch.Tensor:
        """The ``[n, k]`` float32 matrix stored in raw GGUF rows ``w``, rounded as gguf-py does."""
        qt = _qtype_id(qtype)
        _require(w, "w", torch.uint8)
        if k <= 0 or k % 32 or w.numel() != n * (k // 32) * BLOCK_BYTES[qtype]:
            raise KernelError(f"w holds {w.numel()} bytes, not {n} rows of {k} {qtype} values")
        if out is None:
            out = torch.empty(n, k)
        _require(out, "out", torch.float32)
        if out.numel() != n * k:
            raise KernelError(f"out holds {out.numel()} floats, need {n * k}")
        rc = self._dequant(qt, w.data_ptr(), w.numel(), n, k, out.data_ptr(), out.numel(), threads or torch.get_num_threads())
        _check(rc, f"{qtype} dequantize")
        return out

    # -- whole decode step -----------------------------------------------------------------------
    def decode_scratch_floats(self, cfg: torch.Tensor, capacity: int) -> int:
        _require(cfg, "cfg", torch.int32, 1)
        n = int(self._scratch(cfg.data_ptr(), cfg.numel(), capacity))
        _check(min(n, 0), "decode scratch size")
        return n

    def decode_step(
        self, ptrs: torch.Tensor, cfg: torch.Tensor, eps: float, token: int, pos: int, kv: torch.Tensor,
        cos: torch.Tensor, sin: torch.Tensor, scratch: torch.Tensor, logits: torch.Tensor, threads: int,
    ) -> None:
        """One token through the whole decoder (see ``wb_decode_step`` in the C source)."""
        _require_step(ptrs, cfg, kv, cos, sin, scratch, logits)
        rc = self._step(
            ptrs.data_ptr(), ptrs.numel(), cfg.data_ptr(), cfg.numel(), eps, token, pos,
            kv.data_ptr(), kv.numel(), int(kv.shape[3]), cos.data_ptr(), sin.data_ptr(), cos.numel(),
            scratch.data_ptr(), scratch.numel(), logits.data_ptr(), logits.numel(), threads,
        )
        _check(rc, "decode step")

    def prefill_scratch_floats(self, cfg: torch.Tensor, capacity: int, rows: int) -> int:
        _require(cfg, "cfg", torch.int32, 1)
        n = int(self._prefill_scratch(cfg.data_ptr(), cfg.numel(), capacity, rows))
        _check(min(n, 0), "prefill scratch size")
        return n

    def prefill_step(
        self, ptrs: torch.Tensor, cfg: torch.Tensor, eps: float, tokens: torch.Tensor, pos: int, kv: torch.Tensor,
        cos: torch.Tensor, sin: torch.Tensor, scratch: torch.Tensor, logits: torch.Tensor, threads: int,
    ) -> None:
        """Several tokens through the whole decoder, logits of the last (``wb_prefill_step``)."""
        _require(tokens, "tokens", torch.int32, 1)
        _require_step(ptrs, cfg, kv, cos, sin, scratch, logits)
        rc = self._prefill(
            ptrs.data_ptr(), ptrs.numel(), cfg.data_ptr(), cfg.numel(), eps, tokens.data_ptr(), tokens.numel(), pos,
            kv.data_ptr(), kv.numel(), int(kv.shape[3]), cos.data_ptr(), sin.data_ptr(), cos.numel(),
            scratch.data_ptr(), scratch.numel(), logits.data_ptr(), logits.numel(), threads,
        )
        _check(rc, "prefill step")


_lock = threading.Lock()
_loaded: NativeKernels | None = None
_failure: NativeUnavailable | None = None


def _extension_path() -> Path | None:
    here = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = here / f"_wbkernels{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _open(path: Path, origin: str) -> NativeKernels:
    try:
        return NativeKernels(ctypes.CDLL(str(path)), origin, path)
    except (OSError, AttributeError) as exc:
        raise NativeUnavailable(f"cannot load {path}: {exc}") from exc


def load_kernels() -> NativeKernels:
    """The installed extension, else a build of the shipped source; raises :class:`NativeUnavailable`."""
    global _loaded, _failure
    with _lock:
        if _loaded is not None:
            return _loaded
        if _failure is not None:
            raise _failure
        _ = torch.get_num_threads()
        try:
            ext = _extension_path()
            stale: NativeUnavailable | None = None
            if ext is not None:
                try:
                    _loaded = _open(ext, "extension")
                    return _loaded
                except NativeUnavailable as exc:
                    stale = exc
            try:
                _loaded = _open(_build_from_source(), "source build")
            except NativeUnavailable as exc:
                if stale is not None:
                    raise NativeUnavailable(f"{stale}; and {exc}") from exc
                raise
            return _loaded
        except NativeUnavailable as exc:
            _failure = exc
            raise


def compiler() -> str | None:
    """The C compiler a source build would use, or None."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _build_from_source() -> Path:
    """Compile ``csrc/wbkernels.c`` into the cache (keyed by source, flags and compiler)."""
    src = kernel_source()
    if not src.is_file():
        raise NativeUnavailable(f"kernel source {src} is missing and no built extension was found")
    cc = compiler()
    if cc is None:
        raise NativeUnavailable("the package was installed without its built kernels and no C compiler (cc/gcc/clang) is on PATH")
    text = src.read_bytes()
    key = hashlib.sha256(text + " ".join([*_FLAGS, cc, sys.platform]).encode()).hexdigest()[:16]
    target = engine_cache_dir("kernels") / f"wbkernels-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / "lib.so"
        cmd = [cc, *_FLAGS, "-shared", str(src), "-o", str(out), "-lm"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NativeUnavailable(f"compiler failed to run: {exc}") from exc
        if proc.returncode != 0:
            raise NativeUnavailable(f"compiling engine kernels failed: {proc.stderr.strip()[:2000]}")
        os.replace(out, target)  # atomic: parallel processes may race here
    return target
