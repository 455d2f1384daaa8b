"""The `workbench` command. With no subcommand it opens the app; each subcommand lives in its own
module under `workbench.commands` and registers itself through `add_parser`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from workbench import __version__
from workbench.errors import WorkbenchError
from workbench.metrics import otel

# Subcommand modules, in the order `--help` lists them. A module that is absent is skipped.
COMMAND_MODULES = ("run", "runtimes", "serve", "ps", "logs", "stop", "restart", "bench", "replay")
# Commands that load models and so take `--placement` after their name too.
PLACED_COMMANDS = ("run", "serve", "bench", "replay")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Chat with, monitor and compare LLM runtimes side by side.",
        epilog="With no command, opens the app (workbench --actor SPEC --actor SPEC ...).",
    )
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    parser.add_argument(
        "--actor", action="append", default=[], metavar="SPEC",
        help="open a pane on this actor (runtime:model[@host]); repeat for more panes",
    )
    parser.add_argument("--sessions", metavar="DIR", help="folder for session files (default: ./sessions)")
    parser.add_argument("--theme", help="theme to start with")
    otel_help = ("send OpenTelemetry traces and metrics to the console or an OTLP endpoint (OTEL_* variables "
                 "configure it; they alone also switch it on)")
    parser.add_argument("--otel", choices=("console", "otlp"), help=otel_help)
    from workbench.runtimes.placement import COMMAND_PLACEMENT, placement_names

    placement_help = (f"where in-process runtimes (transformers, torch) run their model: {', '.join(placement_names())} "
                      f"(default: {COMMAND_PLACEMENT}, a worker process per model)")
    parser.add_argument("--placement", choices=placement_names(), default=COMMAND_PLACEMENT, help=placement_help,
                        action=_Chosen)
    ray_help = ("the Ray cluster for the ray placement: local (a private instance on 127.0.0.1), auto (the one "
                "`ray start` made here, or RAY_ADDRESS) or ray://HOST:10001; implies --placement ray unless "
                "--placement names another")
    parser.add_argument("--ray", metavar="ADDRESS", help=ray_help)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"workbench.commands.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"workbench.commands.{name}":
                continue
            raise
        module.add_parser(subparsers)
    for name in PLACED_COMMANDS:  # `workbench run --placement thread ...` as well as before the command
        if name in subparsers.choices:
            subparsers.choices[name].add_argument(
                "--placement", choices=placement_names(), default=argparse.SUPPRESS, help=placement_help,
                action=_Chosen)
            subparsers.choices[name].add_argument("--ray", metavar="ADDRESS", default=argparse.SUPPRESS, help=ray_help)
    for command in subparsers.choices.values():  # `workbench serve --otel otlp` as well as before the command
        command.add_argument("--otel", choices=("console", "otlp"), default=argparse.SUPPRESS, help=otel_help)
    return parser


class _Chosen(argparse.Action):
    """Stores `--placement` and notes that it was given, so `--ray` implies `ray` only when it was not."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        namespace.placement_chosen = True


def _use_ray(args: argparse.Namespace) -> None:
    if args.ray is None:
        return
    from workbench.runtimes.placement.ray import set_default_address

    set_default_address(args.ray)
    if not getattr(args, "placement_chosen", False):
        args.placement = "ray"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # argparse gives a `nargs="*"` positional nothing when an option comes between it and the command's
    # first positional (`run SPEC --op think "prompt"`); a command names the list that takes the rest.
    args, extras = parser.parse_known_args(argv)
    if extras:
        target = getattr(args, "extra_positionals", None)
        if target is None or any(item.startswith("-") and item != "-" for item in extras):  # "-": stdin
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        setattr(args, target, [*getattr(args, target), *extras])
    handler = getattr(args, "handler", None)
    from workbench.runtimes.registry import using_placement

    try:
        otel.enable_from(args.otel, screen=handler is None)
        _use_ray(args)
        with using_placement(args.placement):
            if handler is None:
                from workbench.commands.app import run_app

                return run_app(args)
            return int(handler(args) or 0)
    except WorkbenchError as error:
        print(f"workbench: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`workbench replay FILE | head`): not an error. Point stdout at
        # /dev/null so the interpreter's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        otel.disable()  # flush what the exporters still hold


if __name__ == "__main__":
    raise SystemExit(main())
