"""The external-library family: a runtime reached through its own client library (ollama, openai...).

The library does the HTTP; this family owns the client's lifetime and turns the library's exceptions
into workbench's errors, so every runtime fails with the same kinds of clear message.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Awaitable
from typing import Any, ClassVar, TypeVar

from workbench.runtimes.base import Availability, ModelRuntimeActor

T = TypeVar("T")


class ExternalModelRuntimeActor(ModelRuntimeActor):
    """Subclasses set `library`, implement `create_client`, and map errors in `translate_error`."""

    family: ClassVar[str] = "library"
    library: ClassVar[str] = ""

    def __init__(self, model: str, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._client: Any = None

    # ----- subclass hooks ------------------------------------------------------------------------------
    def create_client(self) -> Any:
        raise NotImplementedError

    async def close_client(self, client: Any) -> None:
        """Release the client's connections; by default, awaits `close()`/`aclose()` if it has one."""
        for name in ("aclose", "close"):
            closer = getattr(client, name, None) or getattr(getattr(client, "_client", None), name, None)
            if closer is not None:
                outcome = closer()
                if isinstance(outcome, Awaitable):
                    await outcome
                return

    def translate_error(self, error: Exception) -> Exception | None:
        """Our error for one of the library's, or None to let it through unchanged."""
        return None

    # ----- lifecycle and calls ---------------------------------------------------------------------------
    @classmethod
    async def availability(cls, host: str | None = None) -> Availability:
        if cls.library and importlib.util.find_spec(cls.library) is None:
            return Availability(False, f"the {cls.library!r} package is not installed")
        return Availability(True)

    async def on_start(self) -> None:
        self._client = self.create_client()

    async def on_stop(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await self.close_client(client)

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError(f"actor {self.name} is not started")
        return self._client

    async def call(self, awaitable: Awaitable[T]) -> T:
        """Await one library call, translating its errors."""
        try:
            return await awaitable
        except Exception as error:
            translated = self._translated(error)
            if translated is error:
                raise
            raise translated from error

    async def stream(self, items: AsyncIterator[T] | Awaitable[AsyncIterator[T]]) -> AsyncIterator[T]:
        """Iterate a library stream, translating its errors (including ones raised mid-stream)."""
        try:
            iterator = await items if isinstance(items, Awaitable) else items
            async for item in iterator:
                yield item
        except Exception as error:
            translated = self._translated(error)
            if translated is error:
                raise
            raise translated from error

    def _translated(self, error: Exception) -> Exception:
        translated = self.translate_error(error)
        return translated if translated is not None else error
