"""Helpers for the Ollama tests: scripted actors with the shapes of real models, and a misbehaving
Ollama-like server for fault cases."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.support.scripted import ScriptedActor
from workbench.actors.actor import Message
from workbench.runtimes.base import GenerateRequest
from workbench.runtimes.types import Capabilities, Chunk

STAND_IN = Path(__file__).resolve().parents[1] / "bin" / "ollama"


class ThinkingScripted(ScriptedActor):
    """A scripted model that thinks in `generate` too (the CLI answers through /api/generate)."""

    def stream_generate(self, request: GenerateRequest, message: Message) -> AsyncIterator[Chunk]:
        inner = super().stream_generate(request, message)
        think = bool(request.options.think)

        async def run() -> AsyncIterator[Chunk]:
            if think:
                yield Chunk(thinking="Let me think.\nThe user said: " + request.prompt.strip(), tokens=7)
            async for chunk in inner:
                yield chunk

        return run()


class EmbeddingOnly(ScriptedActor):
    """An embedding model's shape: it embeds and does nothing else."""

    capabilities = Capabilities(generate=False, chat=False, complete=False, summarize_text=False, embed=True)


# ----- a misbehaving server ------------------------------------------------------------------------------
GOOD_LINES = [
    {"model": "good", "created_at": "2024-01-01T00:00:00.1Z", "message": {"role": "assistant", "content": "Hel"},
     "response": "Hel", "done": False},
    {"model": "good", "created_at": "2024-01-01T00:00:00.2Z", "message": {"role": "assistant", "content": "lo"},
     "response": "lo", "done": False},
    {"model": "good", "created_at": "2024-01-01T00:00:00.3Z", "message": {"role": "assistant", "content": ""},
     "response": "", "done": True, "done_reason": "stop", "total_duration": 2_000_000_000,
     "load_duration": 500_000_000, "prompt_eval_count": 10, "prompt_eval_duration": 250_000_000,
     "eval_count": 20, "eval_duration": 1_000_000_000},
]


class FaultServer:
    """Speaks just enough HTTP/1.1 to misbehave on purpose, chosen by the request's model name:
    `good` streams normally; `killed` dies mid-stream (the connection is aborted); `malformed` sends a
    line that is not JSON; `midstream` sends an `{"error"}` line with status 200; `slow` answers after
    `slow_s`; `missing` answers 404; `broken` 500; `busy` 429."""

    def __init__(self, slow_s: float = 3.0) -> None:
        self.slow_s = slow_s
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], dict[str, Any]]:
        """(method, path, lower-cased headers, JSON body) of the next request."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return method, path, headers, json.loads(body) if body else {}

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        method, path, headers, payload = await self.read_request(reader)
        model = str(payload.get("model", "good")).split(":")[0]
        if path == "/api/show":
            return await self._json(writer, 200, {"capabilities": ["completion"], "details": {"family": "test"},
                                                  "model_info": {}})
        if path == "/api/ps":
            return await self._json(writer, 200, {"models": []})
        if model == "missing":
            return await self._json(writer, 404, {"error": "model 'missing' not found"})
        if model == "broken":
            return await self._json(writer, 500, {"error": "llama runner process has terminated: exit status 2"})
        if model == "busy":
            return await self._json(writer, 429, {"error": "server busy, please try again.  maximum pending requests exceeded"})
        if model == "slow":
            await asyncio.sleep(self.slow_s)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n")
        lines_out: list[bytes] = [json.dumps(GOOD_LINES[0]).encode() + b"\n"]
        if model == "killed":
            await self._chunk(writer, lines_out[0])
            await asyncio.sleep(0.05)
            writer.transport.abort()
            return False
        if model == "malformed":
            lines_out.append(b"{this is not json\n")
        elif model == "midstream":
            lines_out.append(b'{"error":"an error was encountered while running the model: out of memory"}\n')
        else:
            lines_out += [json.dumps(line).encode() + b"\n" for line in GOOD_LINES[1:]]
        for line in lines_out:
            await self._chunk(writer, line)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _chunk(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()

    async def _json(self, writer: asyncio.StreamWriter, status: int, value: Any) -> bool:
        body = json.dumps(value).encode()
        reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}[status]
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        return True


class Recording(ScriptedActor):
    """Remembers the options of the last generate request it got."""

    last_options: Any = None

    def stream_generate(self, request: GenerateRequest, message: Message) -> AsyncIterator[Chunk]:
        self.last_options = request.options
        return super().stream_generate(request, message)
