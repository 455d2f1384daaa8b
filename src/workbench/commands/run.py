"""`workbench run SPEC "prompt"`: one operation through one actor, streamed, then its metrics.

The answer streams to stdout as it arrives; thinking is dimmed on a terminal and prefixed with
`thinking: ` otherwise, so a pipe still shows which is which. Metrics follow on their own line.
`--json` prints one JSON object at the end instead (answer, thinking, metrics). Load progress goes
to stderr when stderr is a terminal. Errors are one line on stderr and exit code 2 (`workbench.cli`).

A prompt longer than a command line allows comes from stdin (`-`, or a pipe with no prompt given)
or from `--prompt-file FILE`; for `--op embed` each non-empty line is one text. An `--image` is read
and checked (a real PNG/JPEG/GIF/WebP) before any model loads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from workbench.actors import events
from workbench.actors.events import ActorEvent
from workbench.errors import WorkbenchError
from workbench.files import NO_SUCH_FILE, read_bounded
from workbench.metrics.request import RequestMetrics
from workbench.runtimes.base import TEXT_OPERATIONS, ModelRuntimeActor, read_image_file
from workbench.runtimes.types import ChatMessage, GenerationOptions

OPERATIONS = (*TEXT_OPERATIONS, "embed")
MAX_PROMPT_BYTES = 64 * 1024 * 1024  # far past any model's context; a bound on what is read
DIM, RESET = "\x1b[2m", "\x1b[0m"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run", help="run one operation on one actor and print the answer and its metrics",
        description='Run one operation, e.g. workbench run transformers:smollm2 "What is the capital of France?"',
    )
    parser.add_argument("spec", help="actor spec: runtime:model[@host] (a bare model name means transformers)")
    parser.add_argument("prompt", nargs="*", help="the prompt (embed takes several texts; summarize_image "
                                                  "takes an optional instruction); - reads it from stdin, as "
                                                  "does a pipe when no prompt is given")
    parser.add_argument("--prompt-file", type=Path, metavar="FILE",
                        help="read the prompt from FILE (UTF-8; for --op embed, one text per line)")
    parser.add_argument("--op", choices=OPERATIONS, default="chat", help="operation (default: chat)")
    parser.set_defaults(extra_positionals="prompt")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
    parser.add_argument("--image", type=Path, help="image file for summarize_image (or generate on vision models)")
    parser.add_argument("--system", help="system prompt")
    parser.add_argument("--max-tokens", type=int, help="most new tokens to generate")
    parser.add_argument("--temperature", type=float, help="sampling temperature (0: greedy)")
    parser.add_argument("--top-p", type=float, help="nucleus sampling threshold")
    parser.add_argument("--seed", type=int, help="random seed for sampling")
    parser.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    parser.add_argument("--threads", type=int, help="threads for in-process runtimes (default: all cores)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    args.prompt = _prompt_texts(args)
    _validate(args)
    return asyncio.run(_run(args))


def _prompt_texts(args: argparse.Namespace) -> list[str]:
    """The prompt(s) from the command line, `--prompt-file`, or stdin (`-`, or a pipe and no prompt)."""
    given = list(args.prompt)
    source: str | None = None
    if args.prompt_file is not None:
        if given:
            raise WorkbenchError("give the prompt on the command line or with --prompt-file, not both")
        source = str(args.prompt_file)
        data = _read_prompt_file(args.prompt_file)
    elif given == ["-"] or (not given and args.op != "summarize_image" and _stdin_is_a_pipe()):
        source = "stdin"
        data = sys.stdin.buffer.read(MAX_PROMPT_BYTES + 1)
    elif "-" in given:
        raise WorkbenchError("- (the prompt from stdin) cannot be mixed with other prompt words")
    else:
        return given
    if len(data) > MAX_PROMPT_BYTES:
        raise WorkbenchError(f"the prompt from {source} is more than {MAX_PROMPT_BYTES // (1024 * 1024)} MB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise WorkbenchError(f"the prompt from {source} is not UTF-8 text (byte {error.start})") from None
    if args.op == "embed":
        return [line for line in text.splitlines() if line.strip()]
    if not text.strip():
        raise WorkbenchError(f"the prompt from {source} is empty")
    return [text.rstrip("\n")]


def _stdin_is_a_pipe() -> bool:
    """True when stdin is a pipe or a file (not a terminal, not closed)."""
    try:
        return sys.stdin is not None and not sys.stdin.isatty() and sys.stdin.fileno() >= 0
    except (OSError, ValueError):  # no real stdin (a test harness's stand-in, or it was closed)
        return False


def _read_prompt_file(path: Path) -> bytes:
    def refused(path: Path, problem: str) -> WorkbenchError:
        return WorkbenchError(f"prompt file {path} not found" if problem == NO_SUCH_FILE else f"prompt file {path}: {problem}")

    return read_bounded(path, MAX_PROMPT_BYTES, refused)


def _validate(args: argparse.Namespace) -> None:
    """Refuse bad input before anything loads."""
    if args.image is not None:
        try:
            args.image = read_image_file(args.image, verify=True)  # a data: URL from here on: read once
        except FileNotFoundError as error:
            raise WorkbenchError(str(error)) from None
        except OSError as error:
            raise WorkbenchError(f"cannot read image file {args.image} ({error.strerror})") from None
    if args.op == "summarize_image" and args.image is None:
        raise WorkbenchError("--op summarize_image needs --image FILE")
    if args.op not in ("embed", "summarize_image") and len(args.prompt) != 1:
        raise WorkbenchError(f"--op {args.op} takes one prompt (quote it), got {len(args.prompt)}")
    if args.op == "embed" and not args.prompt:
        raise WorkbenchError("--op embed needs at least one text")
    if args.threads is not None and args.threads < 1:
        raise WorkbenchError(f"--threads must be at least 1, got {args.threads}")


def _options(args: argparse.Namespace) -> GenerationOptions:
    given = {
        "max_tokens": args.max_tokens, "temperature": args.temperature, "top_p": args.top_p, "seed": args.seed,
    }
    values: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    if args.stop:
        values["stop"] = args.stop
    try:
        return GenerationOptions.model_validate(values)
    except ValueError as error:
        first = error.errors()[0] if hasattr(error, "errors") else {"loc": ("?",), "msg": str(error)}
        raise WorkbenchError(f"bad option --{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None


def _create(args: argparse.Namespace) -> ModelRuntimeActor:
    from workbench.runtimes.registry import create_actor

    extra = {"threads": args.threads} if args.threads is not None else {}
    return create_actor(args.spec, **extra)


async def _run(args: argparse.Namespace) -> int:
    options = _options(args)
    actor = _create(args)
    if sys.stderr.isatty():
        actor.on(events.PROGRESS, _show_progress)
    try:
        actor.start()
        await actor.wait_ready()
        if sys.stderr.isatty():
            print("\r\x1b[K", end="", file=sys.stderr, flush=True)
        if args.op == "embed":
            return await _embed(actor, args, options)
        return await _text(actor, args, options)
    finally:
        await actor.stop(drain=False)


def _show_progress(event: ActorEvent) -> None:
    fraction, what = event.data
    print(f"\r\x1b[K{fraction:4.0%} {what}"[:200], end="", file=sys.stderr, flush=True)


def _reply(actor: ModelRuntimeActor, args: argparse.Namespace, options: GenerationOptions) -> Any:
    prompt = " ".join(args.prompt)
    if args.op == "summarize_image":
        extra = {"instruction": prompt} if prompt else {}
        return actor.summarize_image(args.image, options=options, **extra)
    if args.op == "summarize_text":
        return actor.summarize_text(prompt, options=options)
    if args.op == "complete":
        return actor.complete(prompt, options=options)
    if args.op == "generate":
        images = [args.image] if args.image else []
        return actor.generate(prompt, system=args.system, images=images, options=options)
    messages = [ChatMessage(role="system", content=args.system)] if args.system else []
    messages.append(ChatMessage(role="user", content=prompt))
    return actor.think(messages, options=options) if args.op == "think" else actor.chat(messages, options=options)


async def _text(actor: ModelRuntimeActor, args: argparse.Namespace, options: GenerationOptions) -> int:
    reply = _reply(actor, args, options)
    if args.json:
        completion = await reply
        print(json.dumps({
            "spec": actor.spec, "operation": args.op, "answer": completion.text, "thinking": completion.thinking,
            "finish_reason": completion.finish_reason, "metrics": metrics_dict(completion.metrics),
            **await _placement_fields(actor),
        }, indent=2))
        return 0
    printer = StreamPrinter(sys.stdout)
    metrics: RequestMetrics | None = None
    async for chunk in reply:
        printer.write(chunk.thinking, chunk.text)
        if chunk.done:
            metrics = chunk.metrics
    printer.end()
    if metrics is not None:
        print(metrics.describe(detailed=True))
    return 0


async def _embed(actor: ModelRuntimeActor, args: argparse.Namespace, options: GenerationOptions) -> int:
    result = await actor.embed(args.prompt, options=options)
    if args.json:
        print(json.dumps({
            "spec": actor.spec, "operation": "embed", "dimensions": result.dimensions, "method": result.method,
            "normalized": result.normalized, "vectors": result.vectors, "metrics": metrics_dict(result.metrics),
            **await _placement_fields(actor),
        }))
        return 0
    for text, vector in zip(args.prompt, result.vectors, strict=True):
        head = ", ".join(f"{value:+.4f}" for value in vector[:4])
        print(f"{text[:40]!r}: [{head}, ...] ({result.dimensions} dims)")
    print(f"{result.method}, {'normalised' if result.normalized else 'not normalised'}")
    if result.metrics is not None:
        print(result.metrics.describe(detailed=True))
    return 0


async def _placement_fields(actor: ModelRuntimeActor) -> dict[str, Any]:
    """The runtime's own details, where the model ran and its process's memory (RSS/USS, baseline,
    model = after load − baseline); empty for runtimes that report none of them."""
    stats = await actor.stats()
    # what actually ran (e.g. the torch engine's weights mode and why), as the runtime reports it
    fields: dict[str, Any] = {"runtime_details": stats.details} if stats.details else {}
    if stats.placement is None and stats.memory is None:
        return fields
    return {**fields, "placement": stats.placement, "memory": stats.memory.summary() if stats.memory else None}


class StreamPrinter:
    """Writes thinking and answer deltas as they come: thinking dimmed on a terminal, else prefixed."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.mode = ""  # "", "thinking" or "answer"

    def write(self, thinking: str, text: str) -> None:
        if thinking:
            if self.mode != "thinking":
                self.stream.write(DIM if self.tty else "thinking: ")
                self.mode = "thinking"
            self.stream.write(thinking)
        if text:
            if self.mode == "thinking":
                self.stream.write(RESET + "\n\n" if self.tty else "\n\n")
            self.mode = "answer"
            self.stream.write(text)
        self.stream.flush()

    def end(self) -> None:
        if self.mode == "thinking" and self.tty:
            self.stream.write(RESET)
        self.stream.write("\n")
        self.stream.flush()


def metrics_dict(metrics: RequestMetrics | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    return metrics.model_dump(exclude={"itl_s"}) | {
        "tokens_per_s": metrics.output_tokens_per_s,
        "decode_tokens_per_s": metrics.decode_tokens_per_s,
        "tpot_s": metrics.tpot_s,
    }

