"""`workbench stop ACTOR`: stop an actor of a running `workbench serve` (seed 002's nop)."""

from __future__ import annotations

import argparse

from workbench.commands.control import add_common, call, print_json


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "stop", description="Stop an actor of a running `workbench serve` (its queued messages are cancelled unless --drain).", help="stop an actor of a running workbench serve")
    parser.add_argument("actor", help="actor name, spec or served model name")
    parser.add_argument("--drain", action="store_true", help="let queued messages run first")
    add_common(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    status = call(args, "POST", "/workbench/stop", body={"actor": args.actor, "drain": args.drain})
    if args.json:
        print_json(status)
    else:
        print(f"{status['name']}: {status['state']}")
    return 0
