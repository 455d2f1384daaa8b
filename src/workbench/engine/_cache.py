"""Where the engine keeps compiled kernels and converted tokenizers: under workbench's cache folder."""

from __future__ import annotations

from pathlib import Path

from workbench.paths import cache_dir


def engine_cache_dir(*parts: str) -> Path:
    return cache_dir("engine", *parts)
