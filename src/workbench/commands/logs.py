"""`workbench logs ACTOR`: an actor's recent messages on a running `workbench serve`: input, the full
text it streamed (bounded), how each ended and its metrics."""

from __future__ import annotations

import argparse
import json
import time

from workbench.commands.control import add_common, call, print_json
from workbench.errors import WorkbenchError
from workbench.metrics.streamlog import MessageRecord, format_record


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("logs", help="show an actor's recent messages and their streams",
                                   description="Show an actor's recent messages on a running workbench serve: "
                                               "input, the full text it streamed (bounded), how each ended and "
                                               "its metrics.")
    parser.add_argument("actor", help="actor name, spec or served model name")
    parser.add_argument("-n", "--limit", type=int, default=10, help="how many recent messages (default: 10)")
    parser.add_argument("--id", dest="correlation_id", help="show only the message with this correlation id")
    parser.add_argument("-f", "--follow", action="store_true",
                        help="then keep printing each new message as it ends, until Ctrl-C")
    add_common(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise WorkbenchError(f"--limit {args.limit}: give a positive number")
    name = args.actor
    if args.correlation_id:
        records = [call(args, "GET", "/workbench/messages", params={"id": args.correlation_id})]
    else:
        answer = call(args, "GET", "/workbench/logs", params={"actor": args.actor, "limit": args.limit})
        name, records = answer["actor"], answer["messages"]
    if args.json:
        print_json(records)
    elif not records:
        print(f"{name}: no messages yet", flush=True)
    else:
        print("\n\n".join(format_record(MessageRecord.model_validate(record)) for record in records), flush=True)
    if args.follow and not args.correlation_id:
        follow(args, {record["correlation_id"] for record in records if record["status"] in ENDED})
    return 0


ENDED = ("done", "error", "cancelled")
POLL_S = 0.5


def follow(args: argparse.Namespace, shown: set[str]) -> None:
    """Poll the server and print every message of the actor once it has ended (its full text at once)."""
    while True:
        time.sleep(POLL_S)
        answer = call(args, "GET", "/workbench/logs", params={"actor": args.actor, "limit": 50})
        for record in answer["messages"]:
            if record["status"] in ENDED and record["correlation_id"] not in shown:
                shown.add(record["correlation_id"])
                text = json.dumps(record) if args.json else "\n" + format_record(MessageRecord.model_validate(record))
                print(text, flush=True)
