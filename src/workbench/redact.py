"""Keeps secrets out of saved files and exported telemetry: API keys, auth headers, passwords in URLs.

At the bottom of the layers (it imports nothing of workbench) so `metrics` can use it as `sessions`,
`bench` and `server` do."""

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
    """A copy of a JSON-able value with secret-named keys and secret-looking strings redacted. Keys
    are cleaned too (an actor spec with `user:pass@` can be a key); two keys that clean to the same
    text stay apart as `key#2`, `key#3`..., so nothing is silently merged or lost."""
    if isinstance(value, dict):
        cleaned: dict[Any, Any] = {}
        for key, item in value.items():
            secret = isinstance(key, str) and _SECRET_KEY.fullmatch(key) and item not in (None, "")
            new_key = _unique_key(redact_text(key), cleaned) if isinstance(key, str) else key
            cleaned[new_key] = REDACTED if secret else redact(item)
        return cleaned
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def _unique_key(key: str, taken: dict[Any, Any]) -> str:
    if key not in taken:
        return key
    number = 2
    while f"{key}#{number}" in taken:
        number += 1
    return f"{key}#{number}"


def redacted_labels(specs: list[str]) -> list[str]:
    """Labels safe to save for a list of actor specs: each spec without credentials, and `#2`, `#3`...
    when specs repeat, or differ only by credentials, so each actor keeps its own records."""
    taken: dict[str, None] = {}
    labels = []
    for spec in specs:
        label = _unique_key(redact_text(spec), taken)
        taken[label] = None
        labels.append(label)
    return labels
