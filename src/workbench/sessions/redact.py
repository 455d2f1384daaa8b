"""Keeps secrets out of saved files: API keys, auth headers, passwords in URLs."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"(.*[-_])?(api[-_]?key|authorization|auth|token|secret|password|passwd|cookie|credentials?)", re.I
)
_BEARER = re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.I)
_URL_WITH_USER = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/\s@]+@", re.I)
# Real keys are random and hold digits; the lookahead spares names like `hf-internal-testing/...`.
_KEY_LIKE = re.compile(r"\b(sk|pk|rk|hf|ghp|gho|xox[bap])[-_](?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{16,}\b")


def redact_text(text: str) -> str:
    """Strip credentials from URLs and blank out bearer tokens and API-key-shaped strings."""
    text = _URL_WITH_USER.sub(r"\1", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _KEY_LIKE.sub(REDACTED, text)


def redact(value: Any) -> Any:
    """A copy of a JSON-able value with secret-named keys and secret-looking strings redacted."""
    if isinstance(value, dict):
        return {
            key: (REDACTED if isinstance(key, str) and _SECRET_KEY.fullmatch(key) and item not in (None, "") else redact(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
