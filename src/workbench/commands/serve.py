"""`workbench serve`: serve actors over Ollama's and OpenAI's HTTP APIs, so any Ollama or OpenAI client can use them."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any, NoReturn

from workbench.errors import WorkbenchError


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve actors over Ollama's and OpenAI's HTTP APIs",
        description="Serve in-process actors over Ollama's HTTP API (/api/chat, /api/generate, /api/embed...) "
                    "and OpenAI's (/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models). "
                    "An actor transformers:smollm2 serves as model smollm2. Requests are bounded: a 16 KiB "
                    "head, a 16 MiB body, prompts of 1 M characters, 10 s for a head, 30 s idle.",
    )
    parser.add_argument("--actor", dest="serve_actors", action="append", default=[], metavar="SPEC",
                        help="an actor to serve (runtime:model, an in-process one optionally @process|@thread|@ray); "
                             "repeat for more models")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=11434, help="port to bind; 0 picks a free one (default: 11434)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="threads for each in-process model (default: the machine's cores)")
    parser.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE",
                        help="a default option for every request, as a Modelfile PARAMETER (e.g. num_predict=128); "
                             "requests override it")
    parser.add_argument("--journal", metavar="FILE",
                        help="keep every message's input and streamed text in this append-only file, so "
                             "`workbench logs` still shows them after a restart (bounded: rotates at 16 MiB)")
    parser.set_defaults(handler=run)


def parse_parameters(items: list[str]) -> dict[str, Any]:
    """`num_predict=128` → {"num_predict": 128}: values are JSON where they parse, else strings."""
    parameters: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise WorkbenchError(f"--parameter {item!r}: write KEY=VALUE, e.g. num_predict=128")
        try:
            parameters[key] = json.loads(value)
        except ValueError:
            parameters[key] = value
    return parameters


def run(args: argparse.Namespace) -> int:
    from workbench.server.app import serve

    specs = args.serve_actors or args.actor
    if not specs:
        print("workbench serve: give at least one --actor SPEC (e.g. --actor transformers:smollm2)", file=sys.stderr)
        return 2

    def ready(server: Any) -> None:
        names = ", ".join(server.api.models)
        print(f"workbench serve: listening on {server.url} (models: {names}; OpenAI API at {server.url}/v1)",
              flush=True)

    signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C: actors unload, the port is freed
    try:
        asyncio.run(serve(specs, args.host, args.port, ready=ready, parameters=parse_parameters(args.parameter),
                          threads=args.threads, journal=args.journal))
    except KeyboardInterrupt:
        print("workbench serve: stopped", flush=True)
    except OSError as error:
        print(f"workbench serve: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    return 0


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt
