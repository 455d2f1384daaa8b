"""`workbench restart ACTOR`: restart an actor of a running `workbench serve` (a stopped or failed one
comes back; a running one drops its queue first)."""

from __future__ import annotations

import argparse

from workbench.commands.control import add_common, call, print_json


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "restart", description="Restart an actor of a running `workbench serve`: a new worker, the model loaded again.", help="restart an actor of a running workbench serve")
    parser.add_argument("actor", help="actor name, spec or served model name")
    add_common(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    status = call(args, "POST", "/workbench/restart", body={"actor": args.actor})
    if args.json:
        print_json(status)
    else:
        print(f"{status['name']}: {status['state']} (restarts: {status['restarts']})")
    return 0
