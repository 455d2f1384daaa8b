"""A loopback server speaking the part of Ollama's API the REST runtime uses, which keeps the headers
of every request it gets (to check that `traceparent` arrives).

Chosen by the request's model: `good` streams "Hel", "lo" and a final object with Ollama's counts;
`slow` sends its first line and then waits (for cancellation); `broken` answers 500 with Ollama's
error body.
"""

from __future__ import annotations

import asyncio
import json

from tests.ollama.support import GOOD_LINES, FaultServer


class RecordingOllama(FaultServer):
    """The fault server's plumbing (start, close, connections, chunked writes), with its own answers."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers)

    def headers_for(self, path: str) -> list[dict[str, str]]:
        return [headers for seen, headers in self.requests if seen == path]

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
