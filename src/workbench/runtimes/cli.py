"""The CLI family: a runtime reached by starting a program per request and reading its output.

The program is started from an argument list, never through a shell. Its stdout streams to the
caller as it arrives; its stderr is collected (bounded) for statistics and error messages. A
cancelled request kills the program; a non-zero exit, a crash or a missing binary becomes a
`RuntimeProcessError` / `RuntimeUnavailable` that says what happened.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .. import foreign_env

from workbench.actors.actor import Message
from workbench.errors import RuntimeProcessError, RuntimeUnavailable
from workbench.metrics.sampler import ProcessTarget
from workbench.runtimes.base import Availability, ChatRequest, GenerateRequest, ModelRuntimeActor
from workbench.runtimes.types import Chunk, Usage

STDERR_LIMIT = 64 * 1024
KILL_GRACE_S = 0.5


@dataclass(frozen=True, slots=True)
class CommandLine:
    """One program invocation: the arguments after the program itself, optional stdin, extra env."""

    args: list[str]
    stdin: bytes | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ProcessResult:
    returncode: int
    stderr: str


class CLIModelRuntimeActor(ModelRuntimeActor):
    """Subclasses set `binary` and implement `command_for`; they may refine `parse_output` and
    `usage_from`."""

    family: ClassVar[str] = "cli"
    binary: ClassVar[str] = ""
    binary_env: ClassVar[str] = ""  # environment variable that may name the binary

    def __init__(self, model: str, *, binary: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.binary_path = binary
        self._process: asyncio.subprocess.Process | None = None

    # ----- subclass hooks ------------------------------------------------------------------------------
    def command_for(self, operation: str, request: GenerateRequest | ChatRequest) -> CommandLine:
        raise NotImplementedError

    async def parse_output(
        self, output: AsyncIterator[str], request: GenerateRequest | ChatRequest
    ) -> AsyncIterator[Chunk]:
        """Turn decoded stdout pieces into chunks; by default every piece is answer text."""
        async for piece in output:
            yield Chunk(text=piece)

    def usage_from(self, result: ProcessResult, request: GenerateRequest | ChatRequest) -> Usage | None:
        """Statistics the program printed (on stderr, say), once it has exited."""
        return None

    # ----- finding the program --------------------------------------------------------------------------
    @classmethod
    def find_binary(cls, configured: str | None = None) -> str:
        name = configured or (os.environ.get(cls.binary_env) if cls.binary_env else None) or cls.binary
        found = shutil.which(name)
        if found is None:
            hint = f" or set {cls.binary_env}" if cls.binary_env else ""
            raise RuntimeUnavailable(f"{name!r} not found on PATH: install it{hint}")
        return found

    @classmethod
    async def availability(cls, host: str | None = None) -> Availability:
        try:
            path = cls.find_binary()
        except RuntimeUnavailable as error:
            return Availability(False, str(error))
        return Availability(True, f"uses {path}")

    def memory_target(self) -> ProcessTarget | None:
        process = self._process
        if process is None or process.returncode is not None:
            return None
        return ProcessTarget(process.pid, include_children=True, label=f"{self.binary} (pid {process.pid})")

    # ----- running --------------------------------------------------------------------------------------
    def stream_generate(self, request: GenerateRequest, message: Message) -> AsyncIterator[Chunk]:
        return self._stream(message.operation, request)

    def stream_chat(self, request: ChatRequest, message: Message) -> AsyncIterator[Chunk]:
        return self._stream(message.operation, request)

    async def _stream(self, operation: str, request: GenerateRequest | ChatRequest) -> AsyncIterator[Chunk]:
        command = self.command_for(operation, request)
        result = ProcessResult(returncode=0, stderr="")
        async for chunk in self.parse_output(self.run_command(command, result), request):
            yield chunk
        yield Chunk(done=True, usage=self.usage_from(result, request))

    async def run_command(self, command: CommandLine, result: ProcessResult) -> AsyncIterator[str]:
        """Start the program, yield its stdout as decoded text pieces, and fill `result` at exit."""
        argv = [self.find_binary(self.binary_path), *command.args]
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if command.stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**foreign_env(), **command.env},
            )
        except OSError as error:
            raise RuntimeProcessError(f"could not start {argv[0]}: {error}") from error
        self._process = process
        stderr_task = asyncio.create_task(_collect(process.stderr))
        if command.stdin is not None:
            asyncio.create_task(_feed(process, command.stdin))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        finished = False
        try:
            assert process.stdout is not None
            while True:
                data = await process.stdout.read(4096)
                if not data:
                    break
                text = decoder.decode(data)
                if text:
                    yield text
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
            returncode = await process.wait()
            result.returncode = returncode
            result.stderr = await stderr_task
            finished = True
            if returncode != 0:
                raise RuntimeProcessError(
                    _describe_exit(argv, returncode, result.stderr), returncode=returncode, stderr=result.stderr
                )
        finally:
            if not finished:
                await _kill(process)
                stderr_task.cancel()
            self._process = None


async def _collect(stream: asyncio.StreamReader | None) -> str:
    if stream is None:
        return ""
    kept = bytearray()
    while data := await stream.read(4096):
        kept += data
        if len(kept) > STDERR_LIMIT:
            del kept[: len(kept) - STDERR_LIMIT]
    return kept.decode("utf-8", errors="replace")


async def _feed(process: asyncio.subprocess.Process, data: bytes) -> None:
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(data)
        await process.stdin.drain()
        process.stdin.close()


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), KILL_GRACE_S)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def _describe_exit(argv: list[str], returncode: int, stderr: str) -> str:
    program = os.path.basename(argv[0])
    if returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with status {returncode}"
    last_lines = "\n".join(stderr.strip().splitlines()[-5:])
    return f"{program} {how}" + (f": {last_lines}" if last_lines else "")
