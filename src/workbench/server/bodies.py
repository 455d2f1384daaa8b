"""Request bodies for every API `workbench serve` speaks: JSON parsed with bounds, then validated by
a pydantic model, so a wrong type (`"images": 5`) or a hostile body (nested 100 000 deep) is a 400
naming the field, never a 500."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from workbench.server.http import Request

MAX_PROMPT_CHARS = 1_000_000  # refused before any tokenizer sees it (413): far past any context here

Body = TypeVar("Body", bound=BaseModel)


class BadRequest(Exception):
    """A request we refuse; each API answers it in its own error shape."""

    def __init__(self, message: str, status: int = 400, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.param = param


def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or BadRequest saying what is wrong with it."""
    if not request.body.strip():
        raise BadRequest("missing request body")
    try:
        body = json.loads(request.body)
    except RecursionError:
        raise BadRequest("invalid JSON in request body: nested too deeply") from None
    except ValueError as error:
        raise BadRequest(f"invalid JSON in request body: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def validated(model: type[Body], body: dict[str, Any]) -> Body:
    """`body` as `model`; the first problems, each with its field path, in a BadRequest."""
    try:
        return model.model_validate(body)
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    except ValidationError as error:
        problems = []
        for item in error.errors()[:3]:
            where = ".".join(str(part) for part in item["loc"]) or "body"
            problems.append(f"{where}: {item['msg']}")
        first = error.errors()[0]["loc"] if error.errors() else ()
        raise BadRequest("invalid request: " + "; ".join(problems),
                         param=".".join(str(part) for part in first) or None) from None


def check_prompt_size(*texts: str | None, limit: int = MAX_PROMPT_CHARS) -> None:
    """Refuse a prompt by its length before it reaches a tokenizer (tokenizing 50 MB takes a minute)."""
    total = sum(len(text) for text in texts if text)
    if total > limit:
        raise BadRequest(f"the prompt is {total} characters; this server takes at most {limit}", 413,
                         code="prompt_too_long")
