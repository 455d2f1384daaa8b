"""`ollama-cli`: Ollama through `ollama run`, one subprocess per request (never through a shell).

The command is `ollama run MODEL --nowordwrap --verbose [--think=true|false|low|medium|high]
[--hidethinking] [--format json] [--keepalive DURATION]`, with the prompt on stdin. Because stdin is not
a terminal, the real CLI answers once, non-interactively, through `/api/generate`; it prints the answer
on stdout (with a `Thinking...` / `...done thinking.` block first when the model thinks) and two
newlines after it, and with `--verbose` its statistics on stderr (`total duration:`, `eval rate:`...,
durations in Go's format: `1.2s`, `85.2ms`, `950µs`, `1m2.5s`) after a spinner drawn with terminal
escape sequences. `OLLAMA_HOST` is set from the actor spec's `@host` when it has one.

How `chat` becomes one prompt (`ollama run` takes no message list):
- a conversation of one user message (with or without system messages) is sent as
  `SYSTEM\n\nUSER` (just `USER` without a system message): the model's own template wraps it;
- a longer conversation is sent as a transcript, one block per message separated by blank lines,
  `System: ...`, `User: ...`, `Assistant: ...`, ending with a line `Assistant:` for the model to
  continue. Image parts cannot be passed this way and are refused.

What `ollama run` cannot express: sampling options (temperature, top_p, top_k, seed, max_tokens, stop)
have no flags, so they are not applied (the server's Modelfile defaults hold); `complete` (raw mode) is
not supported. An embedding model's `ollama run` prints its vector as a JSON array; that serves `embed`,
one process per input.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from workbench.actors.actor import Message
from workbench.errors import ModelNotFound, RuntimeProcessError
from workbench.metrics.sampler import ProcessTarget
from workbench.runtimes.base import ChatRequest, EmbedRequest, GenerateRequest
from workbench.runtimes.cli import CLIModelRuntimeActor, CommandLine, ProcessResult
from workbench.runtimes.ollama_common import ServerProcess, parse_ollama_host, pull_hint
from workbench.runtimes.types import Capabilities, ChatMessage, Chunk, Embeddings, GenerationOptions, Usage

THINKING_OPEN = "Thinking...\n"
THINKING_CLOSE = "...done thinking.\n\n"

# ----- terminal output ------------------------------------------------------------------------------------
_ESCAPES = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC ... BEL / ST
    r"|\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, line clears, mode switches
    r"|\x1b[@-Z\\-_]"  # two-byte escapes
)
_PARTIAL_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*)?$")
_SPINNER = re.compile(r"[\u2800-\u28ff]")


def strip_escapes(text: str) -> str:
    """Remove terminal escape sequences (colours, cursor moves, the spinner's line clears)."""
    return _ESCAPES.sub("", text)


# ----- Go durations and --verbose statistics ----------------------------------------------------------------
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Seconds in a Go `time.Duration` string (`1h2m3.5s`, `85.2ms`, `950µs`, `0s`)."""
    value = text.strip()
    sign = -1.0 if value.startswith("-") else 1.0
    value = value.lstrip("+-")
    if value == "0":
        return 0.0
    position, total = 0, 0.0
    for match in _GO_PART.finditer(value):
        if match.start() != position:
            break
        total += float(match[1]) * _GO_UNITS[match[2]]
        position = match.end()
    if position != len(value) or not value:
        raise ValueError(f"not a Go duration: {text!r}")
    return sign * total


_STAT_LINE = re.compile(
    r"^(total duration|load duration|prompt eval count|prompt eval duration|prompt eval rate|"
    r"eval count|eval duration|eval rate):\s+(.+?)\s*$"
)


def parse_verbose_stats(stderr: str) -> dict[str, float]:
    """`ollama run --verbose` statistics → the labelled server metrics `ollama-rest` reports too."""
    server: dict[str, float] = {}
    for raw_line in strip_escapes(stderr).replace("\r", "\n").splitlines():
        line = _SPINNER.sub("", raw_line).strip()
        match = _STAT_LINE.match(line)
        if match is None:
            continue
        label, value = match[1], match[2]
        try:
            if label.endswith("count"):
                server[f"ollama_{label.replace(' ', '_')}"] = float(value.split()[0])
            elif label.endswith("rate"):
                name = "ollama_eval_tokens_per_s" if label == "eval rate" else "ollama_prompt_eval_tokens_per_s"
                server[name] = float(value.split()[0])
            else:
                server[f"ollama_{label.replace(' ', '_')}_s"] = parse_go_duration(value)
        except ValueError:
            continue
    return server


def error_line(stderr: str) -> str | None:
    """The `Error: ...` message the CLI prints before exiting with status 1."""
    for line in reversed(strip_escapes(stderr).replace("\r", "\n").splitlines()):
        cleaned = _SPINNER.sub("", line).strip()
        if cleaned.startswith("Error: "):
            return cleaned[len("Error: "):]
    return None


# ----- stdout: answer and thinking ----------------------------------------------------------------------------
@dataclass
class RunOutputParser:
    """Splits `ollama run`'s stdout, fed in arbitrary pieces, into thinking and answer chunks.

    It holds back only what might still turn out to be markup: a partial escape sequence, a prefix of
    `Thinking...` / `...done thinking.`, and the trailing newlines the CLI prints after the answer.
    """

    phase: str = "start"  # start | thinking | answer
    pending: str = ""
    chunks: list[Chunk] = field(default_factory=list)

    def feed(self, piece: str) -> list[Chunk]:
        self.pending += piece
        partial = _PARTIAL_ESCAPE.search(self.pending)
        held = self.pending[partial.start():] if partial else ""
        text = strip_escapes(self.pending[: len(self.pending) - len(held)])
        self.pending = held
        return self._consume(text, final=False)

    def close(self) -> list[Chunk]:
        text, self.pending = strip_escapes(self.pending), ""
        return self._consume(text, final=True)

    def _consume(self, text: str, final: bool) -> list[Chunk]:
        out: list[Chunk] = []
        buffer = text
        while True:
            if self.phase == "start":
                if not buffer and not final:
                    return out
                if buffer.startswith(THINKING_OPEN):
                    self.phase, buffer = "thinking", buffer[len(THINKING_OPEN):]
                    continue
                if THINKING_OPEN.startswith(buffer) and buffer and not final:
                    self._hold(buffer)
                    return out
                self.phase = "answer"
                continue
            if self.phase == "thinking":
                marker = "\n" + THINKING_CLOSE
                index = buffer.find(marker)
                if index >= 0:
                    if index:
                        out.append(Chunk(thinking=buffer[:index]))
                    self.phase, buffer = "answer", buffer[index + len(marker):]
                    continue
                keep = 0 if final else _overlap(buffer, marker)
                emit = buffer[: len(buffer) - keep]
                if final:
                    emit = emit.rstrip("\n")
                if emit:
                    out.append(Chunk(thinking=emit))
                self._hold(buffer[len(buffer) - keep:] if keep else "")
                return out
            # answer: the CLI ends with "\n\n"; hold trailing newlines until we know they are not the end
            stripped = buffer.rstrip("\n")
            trailing = len(buffer) - len(stripped)
            if final:
                emit = buffer[: len(buffer) - min(trailing, 2)]
                self._hold("")
            else:
                emit = stripped
                self._hold(buffer[len(stripped):])
            if emit:
                out.append(Chunk(text=emit))
            return out

    def _hold(self, text: str) -> None:
        self.pending = text + self.pending


def _overlap(text: str, marker: str) -> int:
    """The length of the longest suffix of `text` that is a proper prefix of `marker`."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


# ----- chat as one prompt ------------------------------------------------------------------------------------
def conversation_prompt(messages: list[ChatMessage]) -> str:
    """See the module docstring: one user turn as is (system first), else a labelled transcript."""
    if any(message.image_urls() for message in messages):
        raise ValueError("ollama run cannot take image parts in a chat; use ollama-rest or ollama-lib")
    system = [m.text for m in messages if m.role == "system"]
    turns = [m for m in messages if m.role != "system"]
    if len(turns) == 1 and turns[0].role == "user":
        return "\n\n".join([*system, turns[0].text])
    labels = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}
    blocks = [f"{labels[m.role]}: {m.text}" for m in messages]
    return "\n\n".join([*blocks, "Assistant:"])


def run_flags(options: GenerationOptions) -> list[str]:
    """The `ollama run` flags our options can set."""
    flags = ["--nowordwrap", "--verbose"]
    if options.think is not None:
        value = options.think if isinstance(options.think, str) else ("true" if options.think else "false")
        flags.append(f"--think={value}")
    if options.extra.get("hide_thinking"):
        flags.append("--hidethinking")
    if options.extra.get("format") == "json":
        flags += ["--format", "json"]
    keep_alive = options.extra.get("keep_alive")
    if keep_alive is not None:
        flags += ["--keepalive", f"{keep_alive}s" if isinstance(keep_alive, (int, float)) else str(keep_alive)]
    return flags


class OllamaCLIRuntimeActor(CLIModelRuntimeActor):
    runtime: ClassVar[str] = "ollama-cli"
    description: ClassVar[str] = "Ollama through `ollama run`, as a subprocess"
    binary: ClassVar[str] = "ollama"
    binary_env: ClassVar[str] = "OLLAMA_BINARY"
    capabilities = Capabilities(
        think=True, embed=True, complete=False, summarize_image=False,
        notes={
            "complete": "`ollama run` has no raw mode; use ollama-rest or ollama-lib",
            "summarize_image": "`ollama run` takes images only as file paths typed into a prompt; use ollama-rest",
        },
    )

    def __init__(self, model: str, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.server_process = ServerProcess(parse_ollama_host(self.host))

    def command_for(self, operation: str, request: GenerateRequest | ChatRequest) -> CommandLine:
        if isinstance(request, ChatRequest):
            prompt = conversation_prompt(request.messages)
        else:
            if request.raw:
                raise ValueError("ollama run has no raw mode")
            if request.images:
                raise ValueError("ollama run cannot take images here; use ollama-rest or ollama-lib")
            prompt = f"{request.system}\n\n{request.prompt}" if request.system else request.prompt
        return self._command(prompt, run_flags(request.options))

    def _command(self, prompt: str, flags: list[str]) -> CommandLine:
        env = {"OLLAMA_HOST": self.host} if self.host else {}
        return CommandLine(["run", self.model, *flags], stdin=prompt.encode("utf-8"), env=env)

    async def parse_output(
        self, output: AsyncIterator[str], request: GenerateRequest | ChatRequest
    ) -> AsyncIterator[Chunk]:
        parser = RunOutputParser()
        async for piece in output:
            for chunk in parser.feed(piece):
                yield chunk
        for chunk in parser.close():
            yield chunk

    def usage_from(self, result: ProcessResult, request: GenerateRequest | ChatRequest) -> Usage | None:
        server = parse_verbose_stats(result.stderr)
        counts = (server.get("ollama_prompt_eval_count"), server.get("ollama_eval_count"))
        return Usage(
            input_tokens=int(counts[0]) if counts[0] is not None else None,
            output_tokens=int(counts[1]) if counts[1] is not None else None,
            server=server,
        )

    def stream_generate(self, request: GenerateRequest, message: Message) -> AsyncIterator[Chunk]:
        return self._translated(super().stream_generate(request, message))

    def stream_chat(self, request: ChatRequest, message: Message) -> AsyncIterator[Chunk]:
        return self._translated(super().stream_chat(request, message))

    async def _translated(self, stream: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        try:
            async for chunk in stream:
                yield chunk
        except RuntimeProcessError as error:
            raise self._clear_error(error) from error

    def _clear_error(self, error: RuntimeProcessError) -> Exception:
        message = error_line(error.stderr) if error.stderr else None
        if message is None:
            return error
        if "not found" in message or "file does not exist" in message:
            return ModelNotFound(f"{pull_hint(self.model)} (ollama run said: {message})")
        return RuntimeProcessError(f"ollama run {self.model} failed: {message}",
                                   returncode=error.returncode, stderr=error.stderr)

    async def run_embed(self, request: EmbedRequest, message: Message) -> Embeddings:
        vectors: list[list[float]] = []
        for text in request.inputs:
            result = ProcessResult(returncode=0, stderr="")
            try:
                output = "".join([piece async for piece in self.run_command(self._command(text, []), result)])
            except RuntimeProcessError as error:
                raise self._clear_error(error) from error
            try:
                vector = json.loads(strip_escapes(output).strip())
            except ValueError:
                raise RuntimeProcessError(
                    f"ollama run {self.model} printed no JSON vector: is it an embedding model? "
                    f"It printed {output.strip()[:80]!r}"
                ) from None
            if not (isinstance(vector, list) and all(isinstance(x, (int, float)) for x in vector)):
                raise RuntimeProcessError(f"ollama run {self.model} printed JSON that is not a vector")
            vectors.append([float(x) for x in vector])
        return Embeddings(vectors=vectors, model=self.model, normalized=True, method="ollama run (embedding model)")

    def memory_target(self) -> ProcessTarget | None:
        """The model lives in the Ollama server, not in `ollama run`: watch the local server's tree."""
        return self.server_process.target()

    async def runtime_stats(self) -> dict[str, Any]:
        rss = self.server_process.tree_rss()
        details: dict[str, Any] = {"server": self.server_process.host.connect_url}
        if rss is not None:
            details["server_tree_rss_bytes"] = rss
        return {"memory_bytes": rss, "device": "ollama server", "details": details}
