"""A loopback server speaking the part of Ollama's API the REST runtime uses, which keeps the headers
of every request it gets (to check that `traceparent` arrives).

Chosen by the request's model: `good` streams "Hel", "lo" and a final object with Ollama's counts;
`slow` sends its first line and then waits (for cancellation); `broken` answers 500 with Ollama's
error body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from tests.ollama.support import GOOD_LINES


class RecordingOllama:
    def __init__(self) -> None:
        self.port = 0
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers)
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers_for(self, path: str) -> list[dict[str, str]]:
        return [headers for seen, headers in self.requests if seen == path]

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

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        _, path, _ = lines[0].split(" ", 2)
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((path, headers))
        payload = json.loads(body) if body else {}
        model = str(payload.get("model", "good")).split(":")[0]
        if path == "/api/show":
            return await self._json(writer, 200, {"capabilities": ["completion"], "details": {}, "model_info": {}})
        if model == "broken":
            return await self._json(writer, 500, {"error": "llama runner process has terminated: exit status 2"})
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n")
        for index, line in enumerate(GOOD_LINES):
            await self._chunk(writer, json.dumps(line).encode() + b"\n")
            await asyncio.sleep(0.01)
            if model == "slow" and index == 0:
                await reader.read()  # stall until the client goes away
                return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _chunk(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()

    async def _json(self, writer: asyncio.StreamWriter, status: int, value: Any) -> bool:
        body = json.dumps(value).encode()
        reason = {200: "OK", 500: "Internal Server Error"}[status]
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        return True
