"""`workbench runtimes`: which runtimes exist, and whether each can run here (and why not)."""

from __future__ import annotations

import argparse
import asyncio
import json

from workbench.runtimes.registry import list_runtimes


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("runtimes", help="list runtimes and whether each is available here")
    parser.add_argument("--host", help="server URL to probe for server-based runtimes (default: their own)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from workbench.runtimes.placement.ray import probe

    reports = asyncio.run(list_runtimes(args.host))
    ray = probe(getattr(args, "ray", None))  # in-process runtimes can also run on Ray (placement ray)
    ray_fields = {"installed": ray.installed, "version": ray.version, "cluster": ray.cluster}
    if args.json:
        print(json.dumps([
            {"name": r.name, "family": r.family, "summary": r.summary,
             "available": r.availability.available, "reason": r.availability.reason}
            | ({"ray": ray_fields} if r.family == "in-process" else {})
            for r in reports
        ], indent=2))
        return 0
    width = max(len(r.name) for r in reports)
    for report in reports:
        mark = "yes" if report.availability.available else "no "
        reason = f" ({report.availability.reason})" if report.availability.reason else ""
        print(f"{report.name:<{width}}  {mark}  {report.family:<10} {report.summary}{reason}")
    installed = f"Ray {ray.version} installed" if ray.installed else "Ray not installed"
    print(f"\nray placement (in-process runtimes on a Ray cluster): {installed}; {ray.cluster}")
    return 0
