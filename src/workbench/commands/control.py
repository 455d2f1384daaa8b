"""What `workbench ps`, `stop`, `restart` and `logs` (one module each) share: they inspect and steer
the actors of a running `workbench serve` over its HTTP API (`server/control_api.py`), on 127.0.0.1 by
default. This module is not a subcommand itself.

The server is found at `--url`, else `$WORKBENCH_URL`, else `http://127.0.0.1:11434` (serve's default).
An actor is named by its actor name (`transformers:smollm2`), its spec, or its served model name.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import httpx

from workbench.errors import WorkbenchError

DEFAULT_URL = "http://127.0.0.1:11434"


def add_common(parser: argparse.ArgumentParser) -> None:
    """`--url` and `--json`, as every control command takes them."""
    parser.add_argument("--url", default=None,
                        help=f"the workbench serve to talk to (default: $WORKBENCH_URL or {DEFAULT_URL})")
    parser.add_argument("--json", action="store_true", help="print the server's JSON answer")


# ----- talking to the server ---------------------------------------------------------------------------
def server_url(args: argparse.Namespace) -> str:
    return (args.url or os.environ.get("WORKBENCH_URL") or DEFAULT_URL).rstrip("/")


def call(args: argparse.Namespace, method: str, path: str, *, params: dict[str, Any] | None = None,
         body: dict[str, Any] | None = None) -> Any:
    """One request to the control API; its JSON answer, or a WorkbenchError that says what went wrong."""
    url = server_url(args)
    try:
        response = httpx.request(method, f"{url}{path}", params=params, json=body, timeout=30.0)
    except httpx.ConnectError:
        raise WorkbenchError(f"no workbench serve answers at {url} (start one: workbench serve --actor SPEC; "
                             f"or give --url)") from None
    except httpx.HTTPError as error:
        raise WorkbenchError(f"workbench serve at {url}: {type(error).__name__}: {error}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code == 404 and not (isinstance(answer, dict) and "error" in answer):
        raise WorkbenchError(f"the server at {url} has no control API (is it a workbench serve?)")
    if response.status_code >= 400:
        problem = answer.get("error") if isinstance(answer, dict) else response.text[:200]
        raise WorkbenchError(f"workbench serve at {url}: {problem}")
    return answer


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))
