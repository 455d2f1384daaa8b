"""`ollama-lib`: Ollama through the official `ollama` Python package's `AsyncClient`.

The same operations and metrics as `ollama-rest`, but the library does the HTTP. Its errors become
ours: `ResponseError` with a status code (404 "not found" → ModelNotFound with the pull command),
`ResponseError` with status -1 (an `{"error": ...}` line in a 200 stream), `ConnectionError`
("Ollama not reachable at URL"), and the httpx timeouts and broken streams underneath.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx

from workbench.actors.actor import Message
from workbench.errors import (
    ModelNotFound,
    RuntimeHTTPError,
    RuntimeProtocolError,
    RuntimeTimeout,
    RuntimeUnreachable,
    WorkbenchError,
)
from workbench.metrics import otel
from workbench.metrics.sampler import ProcessTarget
from workbench.runtimes.base import Availability, ChatRequest, EmbedRequest, GenerateRequest
from workbench.runtimes.external import ExternalModelRuntimeActor
from workbench.runtimes.rest import split_credentials
from workbench.runtimes.ollama_common import (
    ServerProcess,
    chunks_from_item,
    ollama_images,
    ollama_messages,
    ollama_options,
    parse_ollama_host,
    pull_hint,
    refine_capabilities,
    request_fields,
    resolve_ollama_url,
    stats_fields,
)
from workbench.runtimes.rest import DEFAULT_TIMEOUT
from workbench.runtimes.types import Capabilities, Chunk, Embeddings


class OllamaLibRuntimeActor(ExternalModelRuntimeActor):
    runtime: ClassVar[str] = "ollama-lib"
    library: ClassVar[str] = "ollama"
    description: ClassVar[str] = "Ollama through the ollama Python library"

    def __init__(self, model: str, *, timeout: httpx.Timeout | float | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.base_url, self._auth = split_credentials(resolve_ollama_url(self.host))
        self.timeout = timeout if timeout is not None else DEFAULT_TIMEOUT
        self.capabilities = Capabilities(think=True, embed=True, summarize_image=True)
        self.server_process = ServerProcess(parse_ollama_host(self.base_url))

    @classmethod
    async def availability(cls, host: str | None = None) -> Availability:
        """The package must be installed and the server must answer (checked as ollama-rest checks it)."""
        installed = await super().availability(host)
        if not installed.available:
            return installed
        from workbench.runtimes.ollama_rest import OllamaRESTRuntimeActor

        return await OllamaRESTRuntimeActor.availability(host)

    def create_client(self) -> Any:
        import ollama

        # The library keeps only host and port from a URL: credentials go as basic auth.
        # Every request carries the running message's traceparent when telemetry is on.
        return ollama.AsyncClient(host=self.base_url, timeout=self.timeout, auth=self._auth,
                                  event_hooks={"request": [otel.add_trace_headers]})

    async def on_start(self) -> None:
        await super().on_start()
        try:
            show = _as_dict(await self.call(self.client.show(self.model)))
        except Exception:  # noqa: BLE001 - best effort: the first request reports any real problem
            return
        self.capabilities = refine_capabilities(self.capabilities, self.model, show)

    def translate_error(self, error: Exception) -> Exception | None:
        import ollama

        if isinstance(error, ollama.ResponseError):
            text = str(error.error)
            if error.status_code == -1:
                return WorkbenchError(f"Ollama reported an error during the stream from {self.base_url}: {text}")
            if error.status_code == 404 and "not found" in text:
                return ModelNotFound(f"{pull_hint(self.model)} (Ollama at {self.base_url} said: {text})")
            return RuntimeHTTPError(error.status_code, text, self.base_url)
        if isinstance(error, ConnectionError):  # what the library raises for a refused connection
            return RuntimeUnreachable("Ollama", self.base_url, "connection refused")
        if isinstance(error, httpx.ConnectError):  # its streaming calls let httpx's own through
            return RuntimeUnreachable("Ollama", self.base_url, str(error) or "connection failed")
        if isinstance(error, httpx.TimeoutException):
            return RuntimeTimeout(f"Ollama at {self.base_url} did not answer in time ({type(error).__name__})")
        if isinstance(error, (httpx.RemoteProtocolError, httpx.ReadError)):
            return RuntimeProtocolError(
                f"Ollama at {self.base_url} closed the connection before the answer was complete ({error})"
            )
        if isinstance(error, json.JSONDecodeError):
            shown = error.doc if len(error.doc) <= 120 else error.doc[:117] + "..."
            return RuntimeProtocolError(f"malformed line in the stream from {self.base_url}: {shown!r}")
        return None

    # ----- operations ----------------------------------------------------------------------------------------
    def stream_chat(self, request: ChatRequest, message: Message) -> AsyncIterator[Chunk]:
        return self._chunks(self.client.chat(
            model=self.model, messages=ollama_messages(request.messages), stream=True,
            **request_fields(request.options),
        ))

    def stream_generate(self, request: GenerateRequest, message: Message) -> AsyncIterator[Chunk]:
        return self._chunks(self.client.generate(
            model=self.model, prompt=request.prompt, system=request.system, raw=request.raw or None,
            images=ollama_images(request.images) or None, stream=True, **request_fields(request.options),
        ))

    async def _chunks(self, call: Any) -> AsyncIterator[Chunk]:
        finished = False
        async for item in self.stream(call):
            for chunk in chunks_from_item(_as_dict(item)):
                finished = finished or chunk.done
                yield chunk
        if not finished:
            raise RuntimeProtocolError(f"Ollama at {self.base_url} ended the stream without its final (done) object")

    async def run_embed(self, request: EmbedRequest, message: Message) -> Embeddings:
        options = ollama_options(request.options) or None
        answer = await self.call(self.client.embed(model=self.model, input=request.inputs, options=options))
        return Embeddings(vectors=[list(v) for v in answer.embeddings], model=self.model, normalized=True,
                          method="ollama /api/embed (ollama-python)")

    # ----- stats ------------------------------------------------------------------------------------------------
    def memory_target(self) -> ProcessTarget | None:
        return self.server_process.target()

    async def runtime_stats(self) -> dict[str, Any]:
        show = ps = None
        problems: list[str] = []
        try:
            show = _as_dict(await self.call(self.client.show(self.model)))
        except Exception as error:  # noqa: BLE001 - stats report problems, they do not fail
            problems.append(str(error))
        try:
            ps = _as_dict(await self.call(self.client.ps()))
        except Exception as error:  # noqa: BLE001
            problems.append(str(error))
        fields = stats_fields(self.model, show, ps, self.server_process.tree_rss())
        fields["details"]["url"] = self.base_url
        if problems:
            fields["details"]["problems"] = problems
        return fields


def _as_dict(item: Any) -> dict[str, Any]:
    """The library's pydantic answers as plain dicts, in the API's field names (`model_info`...)."""
    if isinstance(item, dict):
        return item
    return item.model_dump(mode="json", by_alias=True, exclude_none=True)
