"""`workbench ps`, `workbench stop|restart ACTOR`, `workbench logs ACTOR`: inspect and steer the actors
of a running `workbench serve` over its HTTP API (`server/control_api.py`), on 127.0.0.1 by default.

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
from workbench.metrics.streamlog import MessageRecord, format_record

DEFAULT_URL = "http://127.0.0.1:11434"
MIB = 1024 * 1024


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None,
                        help=f"the workbench serve to talk to (default: $WORKBENCH_URL or {DEFAULT_URL})")
    common.add_argument("--json", action="store_true", help="print the server's JSON answer")

    ps = subparsers.add_parser("ps", parents=[common], help="list the actors of a running workbench serve",
                               description="List a running workbench serve's actors: state, queue, what runs "
                                           "now, placement, memory and counts.")
    ps.set_defaults(handler=run_ps)

    stop = subparsers.add_parser("stop", parents=[common], help="stop an actor of a running workbench serve")
    stop.add_argument("actor", help="actor name, spec or served model name")
    stop.add_argument("--drain", action="store_true", help="let queued messages run first")
    stop.set_defaults(handler=run_stop)

    restart = subparsers.add_parser("restart", parents=[common], help="restart an actor of a running workbench serve")
    restart.add_argument("actor", help="actor name, spec or served model name")
    restart.set_defaults(handler=run_restart)

    logs = subparsers.add_parser("logs", parents=[common],
                                 help="show an actor's recent messages and their streams",
                                 description="Show an actor's recent messages: input, the full text it streamed "
                                             "(bounded), how each ended and its metrics.")
    logs.add_argument("actor", help="actor name, spec or served model name")
    logs.add_argument("-n", "--limit", type=int, default=10, help="how many recent messages (default: 10)")
    logs.add_argument("--id", dest="correlation_id", help="show only the message with this correlation id")
    logs.set_defaults(handler=run_logs)


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


# ----- commands -------------------------------------------------------------------------------------------
def run_ps(args: argparse.Namespace) -> int:
    answer = call(args, "GET", "/workbench/actors")
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    print(format_ps(answer))
    return 0


def run_stop(args: argparse.Namespace) -> int:
    status = call(args, "POST", "/workbench/stop", body={"actor": args.actor, "drain": args.drain})
    print(json.dumps(status, indent=2) if args.json else f"{status['name']}: {status['state']}")
    return 0


def run_restart(args: argparse.Namespace) -> int:
    status = call(args, "POST", "/workbench/restart", body={"actor": args.actor})
    print(json.dumps(status, indent=2) if args.json else f"{status['name']}: {status['state']} "
                                                          f"(restarts: {status['restarts']})")
    return 0


def run_logs(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise WorkbenchError(f"--limit {args.limit}: give a positive number")
    if args.correlation_id:
        records = [call(args, "GET", "/workbench/messages", params={"id": args.correlation_id})]
    else:
        records = call(args, "GET", "/workbench/logs", params={"actor": args.actor, "limit": args.limit})["messages"]
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    if not records:
        print(f"{args.actor}: no messages yet")
    print("\n\n".join(format_record(MessageRecord.model_validate(record)) for record in records))
    return 0


# ----- formatting -------------------------------------------------------------------------------------------
def format_ps(answer: dict[str, Any]) -> str:
    header = ("NAME", "STATE", "QUEUE", "RUNNING", "PLACEMENT", "RSS", "REQ", "ERR", "RESTARTS")
    rows = [header]
    for actor in answer["actors"]:
        rss = f"{actor['rss_bytes'] / MIB:.0f} MiB" if actor.get("rss_bytes") else "-"
        rows.append((actor["name"], actor["state"], str(actor["queued"]), actor.get("running") or "-",
                     actor["placement"], rss, str(actor["requests"]), str(actor["errors"]), str(actor["restarts"])))
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(f"concurrency: {answer['running']} running, {answer['waiting']} waiting, limit {answer['limit']}")
    return "\n".join(lines)
