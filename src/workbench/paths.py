"""Where workbench keeps files of its own outside the project: one place decides, for every module."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """`$WORKBENCH_CACHE`, else `$XDG_CACHE_HOME/workbench`, else `~/.cache/workbench`, plus `parts`.

    Converted model weights, hashes and compiled engine kernels live here: all can be rebuilt.
    """
    if explicit := os.environ.get("WORKBENCH_CACHE"):
        root = Path(explicit).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")).expanduser() / "workbench"
    return root.joinpath(*parts)


def config_dir() -> Path:
    """`$XDG_CONFIG_HOME/workbench`, else `~/.config/workbench`: the user's remembered choices."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")).expanduser() / "workbench"
