"""`workbench logs ACTOR`: an actor's recent messages on a running `workbench serve`: input, the full
text it streamed (bounded), how each ended and its metrics."""

from __future__ import annotations

import argparse

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
    add_common(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise WorkbenchError(f"--limit {args.limit}: give a positive number")
    if args.correlation_id:
        records = [call(args, "GET", "/workbench/messages", params={"id": args.correlation_id})]
    else:
        records = call(args, "GET", "/workbench/logs", params={"actor": args.actor, "limit": args.limit})["messages"]
    if args.json:
        print_json(records)
    elif not records:
        print(f"{args.actor}: no messages yet")
    else:
        print("\n\n".join(format_record(MessageRecord.model_validate(record)) for record in records))
    return 0
