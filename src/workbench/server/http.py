"""A small asyncio HTTP/1.1 server on h11 (the protocol engine httpx itself uses).

Enough for an API server: keep-alive, request bodies with Content-Length or chunked, responses
whole or streamed with chunked transfer encoding, and a `disconnected` event per request so a
handler can cancel work the client no longer waits for. Binds 127.0.0.1 unless told otherwise.

Hand-written on h11 rather than uvicorn + starlette because the limits a public-facing server needs
are not all free there either (uvicorn has no request-body limit and no deadline for a slow request
head), while this loop already handles streaming and disconnects. `ServerLimits` bounds what a
client can make us hold: the request head (16 KiB, h11's default) apart from the body; the body,
refused by its declared size before any of it is read (413), or as it arrives when chunked; a
deadline for the head and the body (slow clients), an idle deadline between keep-alive
requests, and a write deadline (a client that stops reading is dropped and its generation
cancelled). `Expect: 100-continue` is answered with 100 once the declared size is acceptable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import h11

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
MAX_HEADER = 16 * 1024
READ_SIZE = 65536


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one client may make the server hold, and for how long."""

    max_header_bytes: int = MAX_HEADER
    max_body_bytes: int = MAX_BODY
    header_timeout_s: float = 10.0  # from the first byte of a request to the end of its head
    body_timeout_s: float = 60.0  # from the end of the head to the end of the body
    idle_timeout_s: float = 30.0  # an idle keep-alive connection is closed after this
    write_timeout_s: float = 60.0  # a client that reads none of our answer for this long is dropped


class RequestRefused(Exception):
    """A request the transport refuses before any handler sees it (too large, too slow...)."""

    def __init__(self, status: int, message: str, path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.path = path


class ClientGone(Exception):
    """The client closed the connection while we were answering."""


ErrorBody = Callable[..., Any]  # (path, status, message, *, code=None, param=None) -> the JSON body


def plain_error(path: str, status: int, message: str, **details: Any) -> Any:
    """The default error body: Ollama's `{"error": "..."}` (it has no place for a code or a parameter)."""
    return {"error": message}


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Responder:
    """How a handler answers one request: `send` a whole response, or `start` + `write`... + `end`."""

    _connection: _Connection
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    started: bool = False
    finished: bool = False
    error_body: ErrorBody = plain_error
    path: str = ""

    async def send_error(self, status: int, message: str) -> None:
        """An error answer in the shape of the API this request went to."""
        await self.send_json(status, self.error_body(self.path, status, message))

    async def send(self, status: int, body: bytes, content_type: str = "application/json; charset=utf-8") -> None:
        headers = [("content-type", content_type), ("content-length", str(len(body)))]
        await self._connection.emit(h11.Response(status_code=status, headers=headers))
        self.started = True
        await self._connection.emit(h11.Data(data=body))
        await self._connection.emit(h11.EndOfMessage())
        self.finished = True

    async def send_json(self, status: int, value: Any) -> None:
        await self.send(status, json.dumps(value, ensure_ascii=False).encode("utf-8"))

    async def start(self, status: int, content_type: str) -> None:
        """Start a streamed response: no Content-Length, so h11 uses chunked transfer encoding."""
        await self._connection.emit(h11.Response(status_code=status, headers=[("content-type", content_type)]))
        self.started = True

    async def write(self, data: bytes) -> None:
        if self.disconnected.is_set():
            raise ClientGone
        await self._connection.emit(h11.Data(data=data))

    async def end(self) -> None:
        await self._connection.emit(h11.EndOfMessage())
        self.finished = True


Handler = Callable[[Request, Responder], Awaitable[None]]


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 limits: ServerLimits | None = None) -> None:
        self.reader = reader
        self.writer = writer
        self.limits = limits or ServerLimits()
        # h11 buffers at most this much of an incomplete event: the head. Body data is handed over
        # as it arrives, so the body is bounded separately (read_request).
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        self._pending: Any = None  # an event h11 had parsed already (a pipelined request)
        self.stalled = False  # a write waited past write_timeout_s: the connection is aborted, not flushed

    async def emit(self, event: Any) -> None:
        if self.stalled:
            raise ClientGone
        data = self.h11.send(event)
        if data:
            try:
                self.writer.write(data)
                async with asyncio.timeout(self.limits.write_timeout_s):
                    await self.writer.drain()
            except TimeoutError:  # the client stopped reading: drop it rather than hold the answer for it
                self.stalled = True
                raise ClientGone from None
            except (ConnectionError, RuntimeError) as error:
                raise ClientGone from error

    async def next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.reader.read(READ_SIZE)
            self.h11.receive_data(data)

    async def _first_bytes(self) -> bool:
        """Wait (at most the idle deadline) for the next request to begin; False: closed or idle."""
        event = self.h11.next_event()
        if event is not h11.NEED_DATA:
            self._pending = event
            return True
        try:
            async with asyncio.timeout(self.limits.idle_timeout_s):
                data = await self.reader.read(READ_SIZE)
        except TimeoutError:
            return False
        self.h11.receive_data(data)
        return bool(data)

    async def read_request(self) -> Request | None:
        self._pending = None
        if not await self._first_bytes():
            return None
        limits = self.limits
        try:
            async with asyncio.timeout(limits.header_timeout_s):
                event = self._pending if self._pending is not None else await self.next_event()
        except TimeoutError:
            raise RequestRefused(408, f"request head not complete within {limits.header_timeout_s:g} s") from None
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None
        if not isinstance(event, h11.Request):
            return None
        # h11 bounds a head that arrives in pieces; one that arrives whole in a single read is measured here
        head_size = len(event.target) + 16 + sum(len(name) + len(value) + 4 for name, value in event.headers)
        if head_size > limits.max_header_bytes:
            raise RequestRefused(431, f"request head is over the limit of {limits.max_header_bytes} bytes")
        target = event.target.decode("latin-1")
        path, _, query = target.partition("?")
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in event.headers}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise RequestRefused(413, f"request body is {int(declared)} bytes; the limit is {limits.max_body_bytes}",
                                 path)
        if self.h11.they_are_waiting_for_100_continue:
            await self.emit(h11.InformationalResponse(status_code=100, headers=[]))
        body = bytearray()
        try:
            async with asyncio.timeout(limits.body_timeout_s):
                while True:
                    part = await self.next_event()
                    if isinstance(part, h11.Data):
                        body += part.data
                        if len(body) > limits.max_body_bytes:
                            raise RequestRefused(413, f"request body is over the limit of {limits.max_body_bytes} bytes", path)
                    elif isinstance(part, h11.EndOfMessage):
                        break
                    else:
                        return None
        except TimeoutError:
            raise RequestRefused(408, f"request body not complete within {limits.body_timeout_s:g} s", path) from None
        return Request(event.method.decode("ascii"), path, query, headers, bytes(body))

    async def watch(self, responder: Responder) -> None:
        """While a handler runs, notice the client closing (or keep what it pipelines for later)."""
        with contextlib.suppress(ConnectionError):
            while True:
                data = await self.reader.read(READ_SIZE)
                if not data:
                    break
                with contextlib.suppress(h11.RemoteProtocolError):
                    self.h11.receive_data(data)
        responder.disconnected.set()


class HTTPServer:
    """Serves `handler`; `error_body(path, status, message)` shapes the transport's own refusals
    (413, 431, 408, 500) so each API answers in its own error shape."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0,
                 limits: ServerLimits | None = None, error_body: ErrorBody = plain_error) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.limits = limits or ServerLimits()
        self.error_body = error_body
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.accepted = 0  # connections accepted so far (keep-alive reuses one)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve_connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.accepted += 1
        connection = _Connection(reader, writer, self.limits)
        try:
            while True:
                try:
                    request = await connection.read_request()
                except h11.RemoteProtocolError as error:
                    status = error.error_status_hint or 400
                    await _refuse(connection, status, f"bad request: {error}", self.error_body)
                    break
                except RequestRefused as refused:
                    await _refuse(connection, refused.status, str(refused), self.error_body, refused.path)
                    break
                if request is None:
                    break
                if not await self._answer(connection, request):
                    break
                if connection.h11.our_state is not h11.DONE or connection.h11.their_state is not h11.DONE:
                    break
                connection.h11.start_next_cycle()
        except (ClientGone, ConnectionError, h11.ProtocolError):
            pass
        except asyncio.CancelledError:
            pass  # the server is closing: end this connection quietly
        finally:
            self._connections.discard(task)
            if connection.stalled:
                writer.transport.abort()  # close() would wait to flush to a client that does not read
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, connection: _Connection, request: Request) -> bool:
        """Run the handler; False when the connection must close afterwards."""
        responder = Responder(connection, error_body=self.error_body, path=request.path)
        watcher = asyncio.create_task(connection.watch(responder))
        try:
            await self.handler(request, responder)
        except ClientGone:
            return False
        except Exception:  # a handler bug must not take the server down: answer 500 if we still can
            log.exception("handler failed for %s %s", request.method, request.path)
            if not responder.started:
                await responder.send_json(500, self.error_body(request.path, 500, "internal server error"))
            return False
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        return not responder.disconnected.is_set() and responder.finished


async def _refuse(connection: _Connection, status: int, message: str, error_body: ErrorBody,
                  path: str = "") -> None:
    """Answer a refused request (if its head was read far enough to answer at all) and close."""
    if connection.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    with contextlib.suppress(Exception):
        body = json.dumps(error_body(path, status, message)).encode()
        headers = [("content-type", "application/json; charset=utf-8"), ("content-length", str(len(body))),
                   ("connection", "close")]
        await connection.emit(h11.Response(status_code=status, headers=headers))
        await connection.emit(h11.Data(data=body))
        await connection.emit(h11.EndOfMessage())
