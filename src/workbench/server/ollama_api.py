"""`workbench serve`: Ollama's HTTP API (its `docs/api.md`) over workbench's own runtime actors.

Any Ollama client (ollama-python, the `ollama` CLI, our `ollama-*` runtimes) can talk to it. An actor
spec `transformers:smollm2` serves as model `smollm2` (also `smollm2:latest`, Ollama's default tag).
Requests go through the actors' mailboxes and so through the global concurrency limit.

Shapes follow Ollama: NDJSON streams (`application/x-ndjson`, `stream` defaults to true), `created_at`
in RFC 3339 with nanoseconds, `done` / `done_reason`, `{"error": "..."}` bodies (404 for an unknown
model, 400 for bad JSON, missing fields or wrong types: bodies are validated by pydantic models of
Ollama's request types, unknown fields ignored as Go's decoder does; 503 naming the model for one whose
actor is stopped or failed, 502/504 for a runtime server behind it that failed or timed out; see
`status_for`), an `{"error": ...}` line when a stream fails after it began.
The final object's nanosecond metrics are the nearest honest analogues of Ollama's, from our own
measurements: `total_duration` is end to end, `prompt_eval_duration` is start to first token
(prefill), `eval_duration` first to last token, counts are the actor's token counts; `load_duration`
is omitted (models are loaded before the server starts). `context` is omitted. `format` is accepted
but not enforced (our runtimes have no constrained decoding). A client that disconnects cancels its
generation.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workbench import __version__
from workbench.actors import ActorState
from workbench.errors import (
    ActorFailed,
    ActorStopped,
    MessageCancelled,
    ModelNotFound,
    NotSupported,
    RuntimeHTTPError,
    RuntimeProtocolError,
    RuntimeTimeout,
    RuntimeUnavailable,
    WorkbenchError,
)
from workbench.metrics.request import RequestMetrics
from workbench.runtimes.base import ModelRuntimeActor, image_to_data_url
from workbench.runtimes.ollama_common import options_from_ollama
from workbench.runtimes.types import ChatMessage, Chunk, Embeddings, GenerationOptions, ImagePart, ImageURL, TextPart
from workbench.server.bodies import BadRequest, check_prompt_size, json_object, validated
from workbench.server.http import Request, Responder
from workbench.server.routes import Route, Router

NDJSON = "application/x-ndjson"
FOREVER = "2318-11-11T00:00:00Z"  # expires_at of a model that never unloads (keep_alive < 0 in Ollama)


# ----- request bodies (Ollama's api/types.go; unknown fields are ignored, as Go's decoder does) ------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


Think = bool | Literal["low", "medium", "high"]


class OllamaMessage(_Body):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    images: list[str] | None = None
    thinking: str | None = None


class _ModelBody(_Body):
    model: str = Field(min_length=1)
    options: dict[str, Any] | None = None
    keep_alive: str | int | float | None = None


class _TextBody(_ModelBody):
    stream: bool | None = None
    think: Think | None = None
    format: str | dict[str, Any] | None = None


class ChatBody(_TextBody):
    messages: list[OllamaMessage] | None = None


class GenerateBody(_TextBody):
    prompt: str | None = None
    system: str | None = None
    images: list[str] | None = None
    raw: bool | None = None


class EmbedBody(_ModelBody):
    input: str | list[str] | None = None
    truncate: bool | None = None


class EmbeddingsBody(_ModelBody):
    prompt: str | None = None


class NamedBody(_Body):
    """`/api/show` and `/api/pull` also take the older `name`."""

    model: str | None = None
    name: str | None = None
    stream: bool | None = None


def _parsed(request: Request, model: type[Any]) -> Any:
    body = json_object(request)
    if issubclass(model, _ModelBody) and not body.get("model"):
        raise BadRequest("model is required")
    return validated(model, body)


def rfc3339_nano(ns: int | None = None) -> str:
    """Go's time.RFC3339Nano for a UTC time: nanoseconds, trailing zeros trimmed."""
    ns = time.time_ns() if ns is None else ns
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{fraction:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


def served_name(actor: ModelRuntimeActor) -> str:
    """`smollm2` for `transformers:smollm2`; a file path serves under its file name without suffix."""
    model = actor.model
    if "/" in model or model.endswith(".gguf"):
        model = Path(model).stem
    return model


def tagged(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@dataclass
class Served:
    name: str
    actor: ModelRuntimeActor
    started_at: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.actor.spec.encode()).hexdigest()

    def capabilities(self) -> list[str]:
        """Ollama lists `completion` and `embedding` apart: a model that generates is not listed as an
        embedding model (the CLI would otherwise embed instead of answering), though `/api/embed` works."""
        caps = self.actor.capabilities
        listed = ["completion"] if caps.chat or caps.generate else ["embedding"] if caps.embed else []
        if caps.think:
            listed.append("thinking")
        if caps.summarize_image:
            listed.append("vision")
        return listed


class OllamaAPI:
    """The request handler: routes Ollama's endpoints to the served actors."""

    def __init__(self, actors: Sequence[ModelRuntimeActor], parameters: dict[str, Any] | None = None) -> None:
        self.parameters = dict(parameters or {})  # like a Modelfile's PARAMETER lines: requests override them
        self.models: dict[str, Served] = {}
        self._router: Router | None = None
        now = rfc3339_nano()
        for actor in actors:
            served = Served(served_name(actor), actor, now)
            if tagged(served.name) in self.models:
                raise ValueError(f"two actors would both serve model {served.name!r}")
            self.models[tagged(served.name)] = served

    # ----- routing ----------------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        table: list[tuple[str, str, Callable[[Request, Responder], Awaitable[None]]]] = [
            ("GET", "/", self.root), ("HEAD", "/", self.root),
            ("GET", "/api/version", self.version), ("GET", "/api/tags", self.tags),
            ("GET", "/api/ps", self.ps), ("POST", "/api/show", self.show),
            ("POST", "/api/chat", self.chat), ("POST", "/api/generate", self.generate),
            ("POST", "/api/embed", self.embed), ("POST", "/api/embeddings", self.embeddings),
            ("POST", "/api/pull", self.pull),
        ]
        return [Route(method, path, handler) for method, path, handler in table]

    async def __call__(self, request: Request, responder: Responder) -> None:
        """This API alone as an HTTP handler (no OpenAI API, no control endpoints): `HTTPServer(api)`."""
        if self._router is None:
            self._router = Router()
            self._router.include(self.routes())
        await self._router(request, responder)

    def lookup(self, name: str | None) -> Served:
        if not name:
            raise BadRequest("model is required")
        served = self.models.get(tagged(name))
        if served is None:
            raise BadRequest(f"model '{name}' not found", 404)
        return served

    # ----- simple endpoints ----------------------------------------------------------------------------------
    async def root(self, request: Request, responder: Responder) -> None:
        await responder.send(200, b"" if request.method == "HEAD" else b"Ollama is running", "text/plain; charset=utf-8")

    async def version(self, request: Request, responder: Responder) -> None:
        await responder.send_json(200, {"version": __version__})

    async def details(self, served: Served) -> dict[str, Any]:
        stats = await served.actor.stats()
        return {
            "parent_model": "",
            "format": str(stats.details.get("format") or "workbench"),
            "family": str(stats.details.get("family") or served.actor.runtime),
            "families": [str(stats.details.get("family") or served.actor.runtime)],
            "parameter_size": _parameter_size(stats.parameters),
            "quantization_level": str(stats.dtype or ""),
        }

    async def tags(self, request: Request, responder: Responder) -> None:
        models = []
        for key, served in self.models.items():
            models.append({
                "name": key, "model": key, "modified_at": served.started_at, "size": 0,
                "digest": served.digest, "details": await self.details(served),
            })
        await responder.send_json(200, {"models": models})

    async def ps(self, request: Request, responder: Responder) -> None:
        models = []
        for key, served in self.models.items():
            if str(served.actor.state) not in ("idle", "busy"):
                continue
            stats = await served.actor.stats()
            models.append({
                "name": key, "model": key, "size": stats.memory_bytes or 0, "digest": served.digest,
                "details": await self.details(served), "expires_at": FOREVER, "size_vram": 0,
                "context_length": int(stats.details.get("context_length") or 0),
            })
        await responder.send_json(200, {"models": models})

    async def show(self, request: Request, responder: Responder) -> None:
        body = _parsed(request, NamedBody)
        served = self.lookup(body.model or body.name)
        stats = await served.actor.stats()
        model_info: dict[str, Any] = {"general.architecture": str(stats.details.get("family") or served.actor.runtime)}
        if stats.parameters:
            model_info["general.parameter_count"] = stats.parameters
        await responder.send_json(200, {
            "modelfile": f"# served by workbench from {served.actor.spec}\nFROM {served.actor.model}\n",
            "parameters": "", "template": "{{ .Prompt }}",
            "details": await self.details(served), "model_info": model_info,
            "capabilities": served.capabilities(), "modified_at": served.started_at,
        })

    async def pull(self, request: Request, responder: Responder) -> None:
        """workbench cannot pull; a model it serves is already "pulled", any other is not found."""
        body = _parsed(request, NamedBody)
        name = body.model or body.name
        known = bool(name) and tagged(name) in self.models
        status = {"status": "success"} if known else {
            "error": f"pull model manifest: file does not exist (workbench serve cannot pull models; it serves "
                     f"{', '.join(self.models) or 'none'})"
        }
        if body.stream is not False:
            await responder.start(200, NDJSON)
            await responder.write(_line(status))
            await responder.end()
        else:
            await responder.send_json(200 if known else 404, status)

    # ----- generation -------------------------------------------------------------------------------------------
    async def chat(self, request: Request, responder: Responder) -> None:
        body = _parsed(request, ChatBody)
        served = self.lookup(body.model)
        options = self._options(body)
        self._check_think(served, options)
        name = body.model
        if not body.messages:  # Ollama loads the model and answers at once
            await self._single(responder, body, {
                "model": name, "created_at": rfc3339_nano(),
                "message": {"role": "assistant", "content": ""}, "done_reason": "load", "done": True,
            })
            return
        check_prompt_size(*(message.content for message in body.messages))
        messages = [_message(item) for item in body.messages]
        if not served.actor.capabilities.chat:
            raise BadRequest(f'"{name}" does not support chat')

        def frame(text: str, thinking: str) -> dict[str, Any]:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            return {"model": name, "created_at": rfc3339_nano(), "message": message, "done": False}

        await self._generation(responder, body, served, lambda: served.actor.chat(messages, options=options), frame)

    async def generate(self, request: Request, responder: Responder) -> None:
        body = _parsed(request, GenerateBody)
        served = self.lookup(body.model)
        prompt = body.prompt or ""
        options = self._options(body)
        self._check_think(served, options)
        name = body.model
        if not prompt and not body.images:
            await self._single(responder, body, {
                "model": name, "created_at": rfc3339_nano(), "response": "", "done": True, "done_reason": "load",
            })
            return
        check_prompt_size(prompt, body.system)
        images = [_image_bytes(item) for item in body.images or []]
        actor = served.actor
        if body.raw:
            start = lambda: actor.complete(prompt, options=options)  # noqa: E731
        else:
            start = lambda: actor.generate(prompt, system=body.system, images=images, options=options)  # noqa: E731

        def frame(text: str, thinking: str) -> dict[str, Any]:
            item: dict[str, Any] = {"model": name, "created_at": rfc3339_nano(), "response": text}
            if thinking:
                item["thinking"] = thinking
            item["done"] = False
            return item

        await self._generation(responder, body, served, start, frame)

    def _options(self, body: _ModelBody) -> GenerationOptions:
        return _options(body, self.parameters)

    def _check_think(self, served: Served, options: GenerationOptions) -> None:
        if options.think not in (None, False) and not served.actor.capabilities.think:
            raise BadRequest(f'"{served.name}" does not support thinking')

    async def _single(self, responder: Responder, body: _TextBody, item: dict[str, Any]) -> None:
        if body.stream is not False:
            await responder.start(200, NDJSON)
            await responder.write(_line(item))
            await responder.end()
        else:
            await responder.send_json(200, item)

    async def _generation(self, responder: Responder, body: _TextBody, served: Served, start: Any,
                          frame: Any) -> None:
        """Run one text operation and answer it streamed or whole; a disconnect cancels it."""
        try:
            reply = start()
        except FileNotFoundError as error:
            raise BadRequest(str(error)) from None
        except (WorkbenchError, ValueError) as error:  # a stopped actor refuses at once: 503, not 500
            raise refusal_for(error, served) from None
        streamed = body.stream is not False
        await answer_reply(responder, reply, self._stream(responder, served, reply, frame) if streamed
                           else self._whole(responder, served, reply, frame))

    async def _stream(self, responder: Responder, served: Served, reply: Any, frame: Any) -> None:
        chunks: AsyncIterator[Chunk] = reply.__aiter__()
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            first = None
        except Exception as error:  # nothing sent yet: answer with a status, as Ollama does
            refusal = refusal_for(error, served)
            await responder.send_json(refusal.status, {"error": str(refusal)})
            return
        await responder.start(200, NDJSON)
        try:
            chunk = first
            while chunk is not None:
                if chunk.done:
                    final = frame("", "")
                    final.update(_final_fields(chunk.metrics, chunk.finish_reason))
                    await responder.write(_line(final))
                else:
                    await responder.write(_line(frame(chunk.text, chunk.thinking)))
                chunk = await anext(chunks, None)
        except WorkbenchError as error:
            await responder.write(_line({"error": str(refusal_for(error, served))}))
        except Exception as error:  # noqa: BLE001 - a model failure mid-stream: tell the client, as Ollama does
            if isinstance(error, asyncio.CancelledError):
                raise
            await responder.write(_line({"error": f"{type(error).__name__}: {error}"}))
        await responder.end()

    async def _whole(self, responder: Responder, served: Served, reply: Any, frame: Any) -> None:
        try:
            completion = await reply
        except Exception as error:
            refusal = refusal_for(error, served)
            await responder.send_json(refusal.status, {"error": str(refusal)})
            return
        item = frame(completion.text, completion.thinking)
        item.update(_final_fields(completion.metrics, completion.finish_reason))
        await responder.send_json(200, item)

    # ----- embeddings -------------------------------------------------------------------------------------------
    async def embed(self, request: Request, responder: Responder) -> None:
        body = _parsed(request, EmbedBody)
        served = self.lookup(body.model)
        inputs = [body.input] if isinstance(body.input, str) else body.input
        if inputs is None:
            raise BadRequest("input must be a string or a list of strings")
        check_prompt_size(*inputs)
        name = body.model
        if not inputs:
            await responder.send_json(200, {"model": name, "embeddings": []})
            return
        result = await self._embed(served, inputs, body)
        vectors = result.vectors if result.normalized else [unit_vector(v) for v in result.vectors]
        answer: dict[str, Any] = {"model": name, "embeddings": vectors}
        if result.metrics is not None:
            answer["total_duration"] = int(result.metrics.e2e_s * 1e9)
            if result.metrics.input_tokens is not None:
                answer["prompt_eval_count"] = result.metrics.input_tokens
        await responder.send_json(200, answer)

    async def embeddings(self, request: Request, responder: Responder) -> None:
        """The legacy endpoint: one `prompt`, one `embedding`, as the model gives it (not normalised)."""
        body = _parsed(request, EmbeddingsBody)
        served = self.lookup(body.model)
        prompt = body.prompt or ""
        if not prompt:
            await responder.send_json(200, {"embedding": []})
            return
        check_prompt_size(prompt)
        result = await self._embed(served, [prompt], body)
        await responder.send_json(200, {"embedding": result.vectors[0]})

    async def _embed(self, served: Served, inputs: list[str], body: _ModelBody) -> Embeddings:
        if not served.actor.capabilities.embed:
            raise BadRequest(f'"{served.name}" does not support embeddings')
        try:
            return await served.actor.embed(inputs, options=self._options(body))
        except Exception as error:
            raise refusal_for(error, served) from None


# ----- helpers ---------------------------------------------------------------------------------------------------
def _options(body: _ModelBody, parameters: dict[str, Any]) -> GenerationOptions:
    merged = {**parameters, **(body.options or {})}
    think = body.think if isinstance(body, _TextBody) else None
    format = body.format if isinstance(body, _TextBody) else None
    try:
        return options_from_ollama(merged, think=think, keep_alive=body.keep_alive, format=format)
    except ValueError as error:
        raise BadRequest(str(error)) from None


def _image_bytes(item: Any) -> bytes:
    if not isinstance(item, str):
        raise BadRequest("images must be base64 strings")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("an image is not valid base64") from None


def _message(item: OllamaMessage) -> ChatMessage:
    content = item.content or ""
    images = [_image_bytes(image) for image in item.images or []]
    if images:
        parts: list[Any] = [TextPart(text=content)] if content else []
        parts += [ImagePart(image_url=ImageURL(url=image_to_data_url(data))) for data in images]
        return ChatMessage(role=item.role, content=parts, thinking=item.thinking or None)
    return ChatMessage(role=item.role, content=content, thinking=item.thinking or None)


def _final_fields(metrics: RequestMetrics | None, finish_reason: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"done_reason": finish_reason or "stop", "done": True}
    if metrics is None:
        return fields
    fields["total_duration"] = int(metrics.e2e_s * 1e9)
    if metrics.input_tokens is not None:
        fields["prompt_eval_count"] = metrics.input_tokens
    if metrics.ttft_s is not None:
        fields["prompt_eval_duration"] = int(max(0.0, metrics.ttft_s - metrics.queued_s) * 1e9)
    if metrics.output_tokens is not None:
        fields["eval_count"] = metrics.output_tokens
    if metrics.ttft_s is not None:
        fields["eval_duration"] = int(max(0.0, metrics.e2e_s - metrics.ttft_s) * 1e9)
    return fields


def status_for(error: BaseException) -> int:
    """The HTTP status that names what went wrong: bad input 400, no such model file 404, a model not
    running or a runtime missing 503, a runtime server behind it that failed 502 or timed out 504;
    anything else is our own fault, 500."""
    if isinstance(error, (NotSupported, ValueError)):
        return 400
    if isinstance(error, ModelNotFound):
        return 404
    if isinstance(error, (ActorStopped, ActorFailed, RuntimeUnavailable)):
        return 503
    if isinstance(error, (RuntimeHTTPError, RuntimeProtocolError)):
        return 502
    if isinstance(error, RuntimeTimeout):
        return 504
    return 500


def refusal_for(error: BaseException, served: Served) -> BadRequest:
    """How a request is refused when `served`'s actor raised `error` (each API answers it in its own
    error shape). A stopped or FAILED actor is 503 naming the model and the way back (a message cancelled
    because its actor was being stopped counts as stopped), not a bare 500."""
    actor = served.actor
    stopping = actor.state in (ActorState.STOPPING, ActorState.STOPPED)
    if isinstance(error, ActorStopped) or (isinstance(error, MessageCancelled) and stopping):
        why = f"its actor {actor.name} is stopped"
    elif isinstance(error, ActorFailed):
        why = f"its actor {actor.name} failed ({actor.last_error or error})"
    else:
        return BadRequest(str(error) or type(error).__name__, status_for(error))
    return BadRequest(f"model '{served.name}' is not running: {why}; restart it (workbench restart {actor.name})",
                      503, code="model_not_running")


def _line(item: dict[str, Any]) -> bytes:
    return (json.dumps(item, ensure_ascii=False) + "\n").encode("utf-8")


def unit_vector(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else list(vector)


def _parameter_size(parameters: int | None) -> str:
    if not parameters:
        return ""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if parameters >= scale:
            return f"{parameters / scale:.1f}{suffix}".replace(".0", "")
    return str(parameters)


GONE_GRACE_S = 1.0


async def answer_reply(responder: Responder, reply: Any, answering: Awaitable[None]) -> None:
    """Run `answering` (which streams or sends `reply` to the client); the client going away cancels
    the reply, and a reply still running when the answer ends (an error, say) is cancelled."""
    watcher = asyncio.create_task(cancel_when_gone(responder, reply, asyncio.current_task()))
    try:
        await answering
    finally:
        watcher.cancel()
        if not reply.done():
            reply.cancel()


async def cancel_when_gone(responder: Responder, reply: Any, handler: asyncio.Task[Any] | None = None,
                           grace_s: float = GONE_GRACE_S) -> None:
    """When the client goes, cancel its reply; if the handler is still waiting on that reply after
    `grace_s` (a reply that does not settle), cancel the handler too, so the connection is closed
    rather than left half-open (CLOSE_WAIT) behind a generation nobody reads."""
    await responder.disconnected.wait()
    reply.cancel()
    if handler is not None:
        await asyncio.sleep(grace_s)
        handler.cancel()


# ----- the server (moved to workbench.server.app; these names stay for callers of the old place) -----------
def __getattr__(name: str) -> Any:
    if name in ("OllamaAPIServer", "APIServer", "serve"):
        from workbench.server import app

        return getattr(app, "APIServer" if name == "OllamaAPIServer" else name)
    raise AttributeError(name)
