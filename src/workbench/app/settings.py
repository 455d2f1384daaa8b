"""The user's remembered choices (theme, ...), in `$XDG_CONFIG_HOME/workbench/settings.json`.

Written atomically so a crash never leaves a half-written file; an unreadable file is ignored
(the app starts with defaults) rather than stopping the app.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from workbench.paths import config_dir
from workbench.sessions.store import atomic_write_text

log = logging.getLogger(__name__)


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore")
    theme: str | None = None


def settings_path() -> Path:
    return config_dir() / "settings.json"


def load_settings(path: Path | None = None) -> Settings:
    path = path or settings_path()
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        return Settings.model_validate(data)
    except FileNotFoundError:
        return Settings()
    except (OSError, ValueError, ValidationError) as error:
        log.warning("ignoring unreadable settings file %s: %s", path, error)
        return Settings()


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    path = path or settings_path()
    atomic_write_text(path, json.dumps(settings.model_dump(), indent=1) + "\n")
    return path
