"""Load catalog models into transformers, with a cache of converted GGUF weights and a memory check.

Why a cache: transformers de-quantizes a GGUF file on every load (about 20 s for SmolLM2 on 2
cores). The first load converts once and saves the result as safetensors + config + tokenizer files
under `cache_dir()/converted/<sha256 of the GGUF>/`; later loads read that folder in about a second.
The folder is written under a temporary name and renamed into place, so a crash never leaves a
half-written cache. The sha256 covers the whole file (a sampled hash could miss an edited file) and
is itself remembered by (path, size, mtime), so it is computed once per file version.

Why a memory check: a model that does not fit makes the machine swap until it locks up. Before
loading we estimate parameters x bytes per parameter plus room for the KV cache and activations, and
refuse with `InsufficientMemory` when that exceeds what `psutil` says is available.

No network, ever: `HF_HUB_OFFLINE=1` and `local_files_only=True` on every load.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

from workbench.errors import InsufficientMemory, ModelNotFound
from workbench.models.catalog import ModelEntry
from workbench.paths import cache_dir
from workbench.sessions.store import atomic_write_text

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ProgressCallback = Callable[[float, str], None]
ModelSource = Literal["cache", "converted", "folder"]

BYTES_PER_PARAMETER = 4  # transformers de-quantizes GGUF to float32; folders load as float32 too
OVERHEAD_FRACTION = 0.25  # KV cache, activations, allocator slack
OVERHEAD_FIXED = 256 * 2**20  # the runtime, tokenizer and first-forward workspace
CONVERSION_FACTOR = 2.0  # converting holds the GGUF tensors and their float32 copies at once


# ----- hashing ---------------------------------------------------------------------------------------
def _hash_index_path() -> Path:
    return cache_dir() / "hashes.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def file_sha256(path: Path) -> str:
    """The full sha256 of `path`, remembered by (path, size, mtime) so it is computed once."""
    path = path.resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    index = _read_json(_hash_index_path())
    if isinstance(known := index.get(key), str):
        return known
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(4 * 2**20):
            digest.update(block)
    index = {k: v for k, v in _read_json(_hash_index_path()).items() if not k.startswith(f"{path}|")}
    index[key] = digest.hexdigest()
    atomic_write_text(_hash_index_path(), json.dumps(index, indent=1))
    return digest.hexdigest()


def converted_dir(entry: ModelEntry) -> Path:
    """Where the converted weights of a GGUF entry live (whether or not they exist yet)."""
    if entry.gguf_file is None:
        raise ValueError(f"{entry.name} is not a GGUF model")
    return cache_dir() / "converted" / file_sha256(entry.file)


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; rename it to `target` only if the block succeeds.

    If another process finished the same folder first, ours is discarded: both hold the same content.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial"))
    try:
        yield temporary
        try:
            os.rename(temporary, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


# ----- memory estimate -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    parameters: int
    bytes_needed: int
    converting: bool

    def describe(self) -> str:
        return f"{self.parameters / 1e6:.0f}M parameters, about {_gib(self.bytes_needed)} needed"


def _gib(value: int) -> str:
    return f"{value / 2**30:.2f} GiB"


def _safetensors_parameters(path: Path) -> int:
    """Count parameters from a safetensors header (a few KB read, no tensor loaded)."""
    with path.open("rb") as stream:
        (length,) = struct.unpack("<Q", stream.read(8))
        header = json.loads(stream.read(length))
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for dim in info["shape"]:
            count *= dim
        total += count
    return total


def _folder_parameters(folder: Path) -> int:
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return sum(_safetensors_parameters(file) for file in files)
    # Pickled checkpoints: assume float32 storage.
    return sum(file.stat().st_size for file in folder.glob("*.bin")) // BYTES_PER_PARAMETER


def _gguf_parameters(file: Path) -> int:
    from gguf import GGUFReader

    return sum(int(tensor.n_elements) for tensor in GGUFReader(file).tensors)


def estimate_memory(entry: ModelEntry) -> MemoryEstimate:
    """Parameters x bytes per parameter, plus KV cache/activation overhead (and conversion if due)."""
    converting = False
    if entry.gguf_file is None:
        parameters = _folder_parameters(entry.path)
    else:
        cached = converted_dir(entry)
        if (cached / "model.safetensors").is_file():
            parameters = _safetensors_parameters(cached / "model.safetensors")
        else:
            parameters, converting = _gguf_parameters(entry.file), True
    weights = parameters * BYTES_PER_PARAMETER
    needed = int(weights * (1 + OVERHEAD_FRACTION) + OVERHEAD_FIXED)
    if converting:
        needed = int(needed + weights * (CONVERSION_FACTOR - 1))
    return MemoryEstimate(parameters, needed, converting)


def check_memory(entry: ModelEntry, available: int | None = None) -> MemoryEstimate:
    """Refuse (InsufficientMemory) when the estimate exceeds `available` (default: psutil's figure)."""
    estimate = estimate_memory(entry)
    free = psutil.virtual_memory().available if available is None else available
    if estimate.bytes_needed > free:
        raise InsufficientMemory(
            f"model {entry.name} needs about {_gib(estimate.bytes_needed)} "
            f"({estimate.parameters / 1e6:.0f}M parameters{', converting from GGUF' if estimate.converting else ''}) "
            f"but only {_gib(free)} is available; close other models or pick a smaller one"
        )
    return estimate


# ----- loading ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class LoadedModel:
    """A model and its tokenizer (or processor, for vision models), ready to run.

    Build one with `load_causal_lm`/`load_encoder` and pass it to several actors to share one copy.
    """

    entry: ModelEntry
    model: Any
    tokenizer: Any
    processor: Any | None
    kind: Literal["causal-lm", "vision-lm", "encoder"]
    source: ModelSource
    load_time_s: float
    estimate: MemoryEstimate | None = None

    @property
    def parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.model.parameters())


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@contextmanager
def _tensor_progress(progress: ProgressCallback, start: float, end: float) -> Iterator[None]:
    """Report transformers' GGUF de-quantization tensor by tensor, instead of its tqdm bar on stderr
    (which would also scribble over the app's screen). Skipped if transformers moves that loop."""
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        yield
        return
    original = getattr(gguf_utils, "tqdm", None)
    if original is None:
        yield
        return

    def tracked(iterable: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        items = list(iterable)
        step = max(1, len(items) // 50)
        for index, item in enumerate(items):
            if index % step == 0:
                progress(start + (end - start) * index / len(items), f"converting tensor {index + 1}/{len(items)}")
            yield item

    gguf_utils.tqdm = tracked
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def convert_gguf(entry: ModelEntry, target: Path, progress: ProgressCallback) -> None:
    """De-quantize a GGUF file with transformers and save it to `target` as a normal model folder."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(0.1, f"reading tokenizer from {entry.gguf_file}")
    tokenizer = AutoTokenizer.from_pretrained(entry.path, gguf_file=entry.gguf_file, local_files_only=True)
    progress(0.25, f"converting {entry.gguf_file} (once; cached afterwards)")
    with _tensor_progress(progress, 0.25, 0.7):
        model = AutoModelForCausalLM.from_pretrained(entry.path, gguf_file=entry.gguf_file, local_files_only=True)
    progress(0.7, "saving converted weights to the cache")
    with atomic_folder(target) as folder:
        save_model(model, str(folder / "model.safetensors"))  # handles tied weights
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the saved weights are plain float32
        config.save_pretrained(folder)
        model.generation_config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / "source.json").write_text(json.dumps({"gguf": str(entry.file)}))
    del model
    gc.collect()


def is_vision_folder(folder: Path) -> bool:
    config = _read_json(folder / "config.json")
    return "vision_config" in config


def load_causal_lm(
    entry: ModelEntry,
    progress: ProgressCallback | None = None,
    *,
    available_memory: int | None = None,
) -> LoadedModel:
    """Load a chat model (GGUF through the cache, or a folder), after the memory check."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    report = progress or (lambda fraction, what: None)
    if entry.kind != "chat":
        raise ModelNotFound(f"model {entry.name} is an {entry.kind} model, not a chat model")
    _quiet_transformers()
    started = time.perf_counter()
    report(0.0, f"checking memory for {entry.name}")
    estimate = check_memory(entry, available_memory)
    source: ModelSource = "folder"
    folder = entry.path
    if entry.gguf_file is not None:
        folder = converted_dir(entry)
        source = "cache"
        if not (folder / "model.safetensors").is_file():
            convert_gguf(entry, folder, report)
            source = "converted"
    report(0.85, f"loading weights from {folder}")
    processor = None
    if is_vision_folder(folder):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True, dtype="float32")
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        tokenizer = processor.tokenizer
        kind: Literal["causal-lm", "vision-lm", "encoder"] = "vision-lm"
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype="float32")
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        kind = "causal-lm"
    model.eval()
    report(1.0, "ready")
    return LoadedModel(entry, model, tokenizer, processor, kind, source, time.perf_counter() - started, estimate)


def load_encoder(
    entry: ModelEntry,
    progress: ProgressCallback | None = None,
    *,
    available_memory: int | None = None,
) -> LoadedModel:
    """Load an encoder (sentence-embedding) model folder, after the memory check."""
    from transformers import AutoModel, AutoTokenizer

    report = progress or (lambda fraction, what: None)
    if entry.gguf_file is not None:
        raise ModelNotFound(f"model {entry.name} is a GGUF chat model; embeddings need an encoder folder")
    _quiet_transformers()
    started = time.perf_counter()
    report(0.0, f"checking memory for {entry.name}")
    estimate = check_memory(entry, available_memory)
    report(0.3, f"loading {entry.path}")
    model = AutoModel.from_pretrained(entry.path, local_files_only=True, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(entry.path, local_files_only=True)
    model.eval()
    report(1.0, "ready")
    return LoadedModel(entry, model, tokenizer, None, "encoder", "folder", time.perf_counter() - started, estimate)


def load_model(
    entry: ModelEntry, progress: ProgressCallback | None = None, *, available_memory: int | None = None
) -> LoadedModel:
    """The right loader for the entry's kind."""
    loader = load_encoder if entry.kind == "embedding" else load_causal_lm
    return loader(entry, progress, available_memory=available_memory)
