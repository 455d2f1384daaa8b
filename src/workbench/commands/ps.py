"""`workbench ps`: the actors of a running `workbench serve`: state, queue, what runs now, placement,
memory and counts."""

from __future__ import annotations

import argparse
from typing import Any

from workbench.commands.control import add_common, call, print_json

MIB = 1024 * 1024


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("ps", help="list the actors of a running workbench serve",
                                   description="List a running workbench serve's actors: state, queue, what runs "
                                               "now, placement, memory and counts.")
    add_common(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    answer = call(args, "GET", "/workbench/actors")
    if args.json:
        print_json(answer)
    else:
        print(format_ps(answer))
    return 0


def format_ps(answer: dict[str, Any]) -> str:
    header = ("NAME", "STATE", "QUEUE", "RUNNING", "PLACEMENT", "RSS", "REQ", "ERR", "RESTARTS")
    rows = [header]
    for actor in answer["actors"]:
        rss = f"{actor['rss_bytes'] / MIB:.0f} MiB" if actor.get("rss_bytes") else "-"
        rows.append((actor.get("label") or actor["name"], actor["state"], str(actor["queued"]), actor.get("running") or "-",
                     actor["placement"], rss, str(actor["requests"]), str(actor["errors"]), str(actor["restarts"])))
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(f"concurrency: {answer['running']} running, {answer['waiting']} waiting, limit {answer['limit']}")
    return "\n".join(lines)
