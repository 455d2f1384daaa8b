"""Themes from the top-level `themes/` folder (JSON or TOML files holding Textual `Theme` fields).

They are registered at start beside Textual's own, so the command palette's theme picker lists them.
A bad file is reported and skipped; it never stops the app.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from textual.theme import Theme

import workbench

_THEME_FIELDS = {field.name for field in fields(Theme)}


def themes_dir() -> Path:
    """`$WORKBENCH_THEMES`, else the repository's `themes/`, else `./themes`."""
    if os.environ.get("WORKBENCH_THEMES"):
        return Path(os.environ["WORKBENCH_THEMES"])
    beside_source = Path(workbench.__file__).resolve().parents[2] / "themes"
    return beside_source if beside_source.is_dir() else Path("themes")


def theme_from_data(data: Any, origin: str) -> Theme:
    if not isinstance(data, dict):
        raise ValueError(f"{origin}: expected a table of theme fields")
    unknown = set(data) - _THEME_FIELDS
    if unknown:
        raise ValueError(f"{origin}: unknown theme fields {sorted(unknown)}; known: {sorted(_THEME_FIELDS)}")
    if not data.get("name") or not data.get("primary"):
        raise ValueError(f"{origin}: a theme needs at least 'name' and 'primary'")
    return Theme(**data)


def load_theme_file(path: Path) -> Theme:
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    return theme_from_data(data, path.name)


def load_themes(folder: Path | None = None) -> tuple[list[Theme], list[str]]:
    """Every theme in `folder`, and a message for each file that could not be read."""
    folder = folder or themes_dir()
    themes: list[Theme] = []
    problems: list[str] = []
    if not folder.is_dir():
        return themes, problems
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".json", ".toml"):
            continue
        try:
            themes.append(load_theme_file(path))
        except (OSError, ValueError, TypeError, tomllib.TOMLDecodeError) as error:
            problems.append(f"theme {path.name} skipped: {error}")
    return themes, problems
