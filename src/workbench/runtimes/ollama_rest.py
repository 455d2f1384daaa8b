"""`ollama-rest`: Ollama's HTTP API, spoken directly with httpx (`docs/api.md`).

Text operations stream NDJSON from `/api/chat` and `/api/generate` (`raw: true` for `complete`);
thinking deltas arrive in `message.thinking` / `thinking` before the answer. `embed` uses
`/api/embed` and falls back to the legacy `/api/embeddings` on servers that predate it. `stats`
reads `/api/show` and `/api/ps`, and for a local server the memory of its whole process tree.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from workbench.actors.actor import Message
from workbench.errors import ModelNotFound, RuntimeHTTPError, RuntimeProtocolError, WorkbenchError
from workbench.metrics.sampler import ProcessTarget
from workbench.runtimes.base import ChatRequest, EmbedRequest, GenerateRequest
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
from workbench.runtimes.rest import RESTfulModelRuntimeActor
from workbench.runtimes.types import Capabilities, Chunk, Embeddings


class OllamaRESTRuntimeActor(RESTfulModelRuntimeActor):
    runtime: ClassVar[str] = "ollama-rest"
    service: ClassVar[str] = "Ollama"
    description: ClassVar[str] = "Ollama's HTTP API, with httpx"
    default_url: ClassVar[str] = "http://127.0.0.1:11434"

    def __init__(self, model: str, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.capabilities = Capabilities(think=True, embed=True, summarize_image=True)
        self.server_process = ServerProcess(parse_ollama_host(self.base_url))

    @classmethod
    def resolve_url(cls, host: str | None) -> str:
        return resolve_ollama_url(host)

    async def on_start(self) -> None:
        await super().on_start()
        await self._refine_capabilities()

    async def _refine_capabilities(self) -> None:
        """Vision and embedding depend on the model: ask `/api/show`, best effort (a server that is down
        now may be up at the first request)."""
        try:
            show = await self.show()
        except Exception:  # noqa: BLE001 - best effort: the first request reports any real problem
            return
        self.capabilities = refine_capabilities(self.capabilities, self.model, show)

    # ----- errors -----------------------------------------------------------------------------------------
    def error_for_status(self, status_code: int, body: Any, url: str) -> Exception:
        message = body.get("error") if isinstance(body, dict) else None
        text = str(message or body or "no details")
        if status_code == 404 and "not found" in text and message is not None:
            return ModelNotFound(f"{pull_hint(self.model)} (Ollama at {self.base_url} said: {text})")
        if status_code == 429:
            text += " (the server is busy: too many queued requests; try again or raise OLLAMA_MAX_QUEUE)"
        return RuntimeHTTPError(status_code, text, url)

    def error_in_stream(self, item: Any, url: str) -> Exception | None:
        if isinstance(item, dict) and item.get("error"):
            return WorkbenchError(f"Ollama reported an error during the stream from {url}: {item['error']}")
        if not isinstance(item, dict):
            return RuntimeProtocolError(f"unexpected line in the stream from {url}: {json.dumps(item)[:120]}")
        return None

    # ----- operations ----------------------------------------------------------------------------------------
    def stream_chat(self, request: ChatRequest, message: Message) -> AsyncIterator[Chunk]:
        body = {"model": self.model, "messages": ollama_messages(request.messages), "stream": True,
                **request_fields(request.options)}
        return self._chunks("/api/chat", body)

    def stream_generate(self, request: GenerateRequest, message: Message) -> AsyncIterator[Chunk]:
        body: dict[str, Any] = {"model": self.model, "prompt": request.prompt, "stream": True,
                                **request_fields(request.options)}
        if request.raw:
            body["raw"] = True
        if request.system:
            body["system"] = request.system
        if request.images:
            body["images"] = ollama_images(request.images)
        return self._chunks("/api/generate", body)

    async def _chunks(self, path: str, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        finished = False
        async for item in self.stream_json("POST", path, body):
            for chunk in chunks_from_item(item):
                finished = finished or chunk.done
                yield chunk
        if not finished:
            raise RuntimeProtocolError(
                f"Ollama at {self.base_url}{path} ended the stream without its final (done) object"
            )

    async def run_embed(self, request: EmbedRequest, message: Message) -> Embeddings:
        body: dict[str, Any] = {"model": self.model, "input": request.inputs}
        options = ollama_options(request.options)
        if options:
            body["options"] = options
        try:
            answer = await self.request_json("POST", "/api/embed", body)
        except RuntimeHTTPError as error:
            if error.status_code not in (404, 405):
                raise
            return await self._legacy_embed(request, options)
        return Embeddings(vectors=answer["embeddings"], model=self.model, normalized=True, method="ollama /api/embed")

    async def _legacy_embed(self, request: EmbedRequest, options: dict[str, Any]) -> Embeddings:
        """Servers before `/api/embed` have `/api/embeddings`: one prompt per call, not normalised."""
        vectors = []
        for text in request.inputs:
            body: dict[str, Any] = {"model": self.model, "prompt": text}
            if options:
                body["options"] = options
            answer = await self.request_json("POST", "/api/embeddings", body)
            vectors.append(answer["embedding"])
        return Embeddings(vectors=vectors, model=self.model, normalized=False, method="ollama /api/embeddings")

    # ----- server endpoints beyond the model ------------------------------------------------------------------
    async def version(self) -> str:
        return str((await self.request_json("GET", "/api/version")).get("version", ""))

    async def tags(self) -> list[dict[str, Any]]:
        return list((await self.request_json("GET", "/api/tags")).get("models") or [])

    async def show(self) -> dict[str, Any]:
        return dict(await self.request_json("POST", "/api/show", {"model": self.model}))

    async def ps(self) -> dict[str, Any]:
        return dict(await self.request_json("GET", "/api/ps"))

    def memory_target(self) -> ProcessTarget | None:
        return self.server_process.target()

    async def runtime_stats(self) -> dict[str, Any]:
        show = ps = None
        problems: list[str] = []
        try:
            show = await self.show()
        except WorkbenchError as error:
            problems.append(str(error))
        try:
            ps = await self.ps()
        except WorkbenchError as error:
            problems.append(str(error))
        fields = stats_fields(self.model, show, ps, self.server_process.tree_rss())
        fields["details"]["url"] = self.base_url
        if problems:
            fields["details"]["problems"] = problems
        return fields
