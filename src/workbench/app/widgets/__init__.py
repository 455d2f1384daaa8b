"""Small widgets, one per module, each with its TCSS in a file beside it."""

from __future__ import annotations

from pathlib import Path


def css_beside(module_file: str) -> str:
    """The TCSS file next to a widget's module (`chat_pane.py` -> `chat_pane.tcss`)."""
    return Path(module_file).with_suffix(".tcss").read_text(encoding="utf-8")
