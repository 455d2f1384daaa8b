"""Where the engine keeps compiled kernels and converted tokenizers (same root as the rest of workbench)."""

from __future__ import annotations

import os
from pathlib import Path


def engine_cache_dir(*parts: str) -> Path:
    """`$WORKBENCH_CACHE`, else `$XDG_CACHE_HOME/workbench`, else `~/.cache/workbench`, plus ``parts``."""
    explicit = os.environ.get("WORKBENCH_CACHE")
    if explicit:
        root = Path(explicit).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")).expanduser() / "workbench"
    return root.joinpath("engine", *parts)
