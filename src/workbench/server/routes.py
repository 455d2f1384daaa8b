"""The route table `workbench serve` answers from: (method, path) → handler, filled by each API.

A handler refuses a request by raising `bodies.BadRequest`; the table answers it in the error shape
of the path's API.

Every API (Ollama's `/api/...`, OpenAI's `/v1/...`, control endpoints) adds its routes with `add`;
the table answers 404 / 405 for the rest, and each path prefix may shape its own errors (OpenAI
clients expect `{"error": {"message", "type", ...}}`, Ollama clients `{"error": "..."}`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from workbench.server.bodies import BadRequest
from workbench.server.http import ErrorBody, Request, Responder, plain_error

Handler = Callable[[Request, Responder], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler


class Router:
    """Dispatches a request to the handler of its exact (method, path)."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Handler] = {}
        self._error_shapes: list[tuple[str, ErrorBody]] = []

    def add(self, method: str, path: str, handler: Handler) -> None:
        key = (method.upper(), path)
        if key in self._routes:
            raise ValueError(f"route {method} {path} is already taken")
        self._routes[key] = handler

    def include(self, routes: list[Route]) -> None:
        for route in routes:
            self.add(route.method, route.path, route.handler)

    def error_shape(self, prefix: str, shape: ErrorBody) -> None:
        """Errors for paths under `prefix` (the transport's own ones too) use `shape`."""
        self._error_shapes.append((prefix, shape))
        self._error_shapes.sort(key=lambda item: -len(item[0]))

    def error_body(self, path: str, status: int, message: str, **details: Any) -> Any:
        for prefix, shape in self._error_shapes:
            if path.startswith(prefix):
                return shape(path, status, message, **details)
        return plain_error(path, status, message, **details)

    @property
    def routes(self) -> list[Route]:
        return [Route(method, path, handler) for (method, path), handler in self._routes.items()]

    async def __call__(self, request: Request, responder: Responder) -> None:
        handler = self._routes.get((request.method, request.path))
        if handler is not None:
            try:
                await handler(request, responder)
            except BadRequest as error:  # a refused request, in the error shape of its API
                if not responder.started:
                    await responder.send_json(error.status, self.error_body(
                        request.path, error.status, str(error), code=error.code, param=error.param))
            return
        if any(path == request.path for _, path in self._routes):
            status, text = 405, "405 method not allowed"
        else:
            status, text = 404, "404 page not found"
        if any(request.path.startswith(prefix) for prefix, _ in self._error_shapes):
            await responder.send_error(status, text)
        else:  # as Ollama (Go's gin) answers
            await responder.send(status, text.encode(), "text/plain")
