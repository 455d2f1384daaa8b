"""The RESTful family: a runtime reached over HTTP directly, with one `httpx.AsyncClient` per actor.

Streams are read line by line, as NDJSON (`application/x-ndjson`, Ollama) or server-sent events
(`text/event-stream`, OpenAI-compatible servers). Transport failures become errors that say where:
"Ollama not reachable at http://127.0.0.1:11434", a timeout with its length, a stream that ended
early, a malformed line. With telemetry on, every request carries the W3C `traceparent` of the
message it serves (`metrics.otel.trace_headers`), so the server's spans join workbench's trace.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import httpx

from workbench.errors import (
    RuntimeHTTPError,
    RuntimeProtocolError,
    RuntimeTimeout,
    RuntimeUnreachable,
    WorkbenchError,
)
from workbench.metrics import otel
from workbench.runtimes.base import Availability, ModelRuntimeActor

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=300.0, write=30.0, pool=30.0)



def split_credentials(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """`url` without its `user:password@`, and those as HTTP basic auth: the server behind an
    authenticating proxy gets them on every request, and no message or display shows them."""
    parsed = httpx.URL(url)
    if not parsed.userinfo:
        return url, None
    return str(parsed.copy_with(username=None, password=None)), httpx.BasicAuth(parsed.username, parsed.password)

class RESTfulModelRuntimeActor(ModelRuntimeActor):
    """Subclasses set `default_url` and `service` and build their requests with `request_json` and
    `stream_json`; they may refine `error_for_status`."""

    family: ClassVar[str] = "rest"
    service: ClassVar[str] = "server"
    default_url: ClassVar[str] = "http://127.0.0.1:8000"
    health_path: ClassVar[str] = "/"

    def __init__(self, model: str, *, timeout: httpx.Timeout | float | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.base_url, self.auth = split_credentials(self.resolve_url(self.host))
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else (
            httpx.Timeout(timeout) if timeout is not None else DEFAULT_TIMEOUT
        )
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def resolve_url(cls, host: str | None) -> str:
        """The base URL for `host` (None: the runtime's default); subclasses parse their own forms."""
        return (host or cls.default_url).rstrip("/")

    @classmethod
    async def availability(cls, host: str | None = None) -> Availability:
        url, auth = split_credentials(cls.resolve_url(host))
        try:
            async with httpx.AsyncClient(base_url=url, timeout=2.0, auth=auth) as client:
                response = await client.get(cls.health_path)
        except httpx.HTTPError as error:
            return Availability(False, f"{cls.service} not reachable at {url} ({type(error).__name__})")
        if response.status_code >= 400:
            return Availability(False, f"{cls.service} at {url} answered HTTP {response.status_code}")
        return Availability(True, f"{cls.service} answers at {url}")

    # ----- lifecycle ------------------------------------------------------------------------------------
    async def on_start(self) -> None:
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout, auth=self.auth)

    async def on_stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError(f"actor {self.name} is not started")
        return self._client

    # ----- requests -------------------------------------------------------------------------------------
    def error_for_status(self, status_code: int, body: Any, url: str) -> Exception:
        """The error for an error response; `body` is the parsed JSON body, or its text."""
        message = body.get("error") if isinstance(body, dict) else None
        if isinstance(message, dict):
            message = message.get("message", json.dumps(message))
        return RuntimeHTTPError(status_code, str(message or body or "no details"), url)

    def error_in_stream(self, item: Any, url: str) -> Exception | None:
        """An error carried inside a stream with status 200 (Ollama sends `{"error": ...}` lines)."""
        if isinstance(item, dict) and "error" in item and len(item) <= 2:
            return WorkbenchError(f"{self.service} error during the stream from {url}: {item['error']}")
        return None

    async def request_json(self, method: str, path: str, payload: Any = None) -> Any:
        """One request, its JSON answer; error statuses and transport failures raise our errors."""
        async with self._translated(path):
            response = await self.client.request(method, path, json=payload, headers=otel.trace_headers())
            if response.status_code >= 400:
                raise self.error_for_status(response.status_code, _body(response.content), str(response.url))
            try:
                return response.json()
            except ValueError:
                raise RuntimeProtocolError(
                    f"{self.service} at {response.url} answered with something that is not JSON: "
                    f"{response.text[:200]!r}"
                ) from None

    async def stream_json(self, method: str, path: str, payload: Any = None, *,
                          sse: bool | None = None) -> AsyncIterator[Any]:
        """The objects of a streamed answer, as they arrive (NDJSON lines or SSE `data:` events); `sse`
        None decides by the content type, True reads SSE whatever the server calls it."""
        async with self._translated(path):
            async with self.client.stream(method, path, json=payload, headers=otel.trace_headers()) as response:
                url = str(response.url)
                if response.status_code >= 400:
                    raise self.error_for_status(response.status_code, _body(await response.aread()), url)
                if sse is None:
                    sse = response.headers.get("content-type", "").startswith("text/event-stream")
                async for line in response.aiter_lines():
                    item = _parse_line(line, sse, url)
                    if item is _SKIP:
                        continue
                    if item is _DONE:
                        return
                    error = self.error_in_stream(item, url)
                    if error is not None:
                        raise error
                    yield item

    @asynccontextmanager
    async def _translated(self, path: str) -> AsyncIterator[None]:
        url = f"{self.base_url}{path}"
        try:
            yield
        except httpx.ConnectError as error:
            raise RuntimeUnreachable(self.service, self.base_url, _reason(error)) from error
        except httpx.TimeoutException as error:
            raise RuntimeTimeout(
                f"{self.service} at {url} did not answer in time ({type(error).__name__}; "
                f"read timeout {self.timeout.read}s)"
            ) from error
        except (httpx.RemoteProtocolError, httpx.ReadError) as error:
            raise RuntimeProtocolError(
                f"{self.service} at {url} closed the connection before the answer was complete ({_reason(error)})"
            ) from error


_SKIP = object()
_DONE = object()


def _parse_line(line: str, sse: bool, url: str) -> Any:
    text = line.strip()
    if not text:
        return _SKIP
    if sse:
        if not text.startswith("data:"):
            return _SKIP  # event:, id:, retry: and comments carry nothing we use
        text = text[5:].strip()
        if text == "[DONE]":
            return _DONE
    try:
        return json.loads(text)
    except ValueError:
        shown = text if len(text) <= 120 else text[:117] + "..."
        raise RuntimeProtocolError(f"malformed line in the stream from {url}: {shown!r}") from None


def _body(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", errors="replace").strip()


def _reason(error: Exception) -> str:
    return str(error) or type(error).__name__
