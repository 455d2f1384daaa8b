"""The server `workbench serve` runs: one route table holding Ollama's API and OpenAI's, over the
same actors, on the h11 transport with its limits.

Other endpoints plug in with `server.router.add(method, path, handler)` (a handler takes the
`Request` and a `Responder`), before or after `start`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench.metrics import otel
from workbench.runtimes.base import ModelRuntimeActor
from workbench.server.control_api import ControlAPI
from workbench.server.http import HTTPServer, Request, Responder, ServerLimits
from workbench.server.ollama_api import OllamaAPI
from workbench.server.openai_api import OpenAIAPI, openai_error
from workbench.server.routes import Router


class APIServer:
    """An HTTP server speaking Ollama's and OpenAI's APIs over `actors` (started by the caller)."""

    def __init__(self, actors: Sequence[ModelRuntimeActor], host: str = "127.0.0.1", port: int = 11434,
                 parameters: dict[str, Any] | None = None, limits: ServerLimits | None = None,
                 journal: Path | str | None = None) -> None:
        self.actors = list(actors)
        self.api = OllamaAPI(self.actors, parameters)
        self.openai = OpenAIAPI(self.api.models, parameters)
        self.router = Router()
        self.router.include(self.api.routes())
        self.router.include(self.openai.routes())
        aliases = {name: served.actor for key, served in self.api.models.items() for name in (key, served.name)}
        self.control = ControlAPI(self.actors, aliases, journal=journal)  # /workbench/...: ps, stop, logs...
        self.router.include(self.control.routes())
        self.router.error_shape("/v1/", openai_error)
        self.http = HTTPServer(self._handle, host, port, limits=limits, error_body=self.router.error_body)

    async def _handle(self, request: Request, responder: Responder) -> None:
        with otel.remote_parent(request.headers):  # a caller's traceparent: our spans join its trace
            await self.router(request, responder)

    @property
    def url(self) -> str:
        return self.http.url

    async def start(self) -> None:
        await self.http.start()

    async def close(self) -> None:
        await self.http.close()
        self.control.close()

    async def __aenter__(self) -> APIServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve(specs: Sequence[str], host: str = "127.0.0.1", port: int = 11434,
                ready: Any = None, parameters: dict[str, Any] | None = None,
                limits: ServerLimits | None = None, threads: int | None = None,
                journal: Path | str | None = None) -> None:
    """Create and start the actors (`threads`: each in-process model's thread count), serve until
    cancelled, then stop them."""
    from workbench.runtimes.registry import create_actor

    actors = [create_actor(spec, **({"threads": threads} if threads else {})) for spec in specs]
    try:
        for actor in actors:
            actor.start()
        for actor in actors:
            await actor.wait_ready()
        server = APIServer(actors, host, port, parameters, limits, journal=journal)
        await server.start()
        if ready is not None:
            ready(server)
        try:
            await server.http.serve_forever()
        finally:
            await server.close()
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                await actor.stop(drain=False)
