"""`workbench serve`: Ollama's HTTP API (its `docs/api.md`) over workbench's own runtime actors.

Any Ollama client (ollama-python, the `ollama` CLI, our `ollama-*` runtimes) can talk to it. An actor
spec `transformers:smollm2` serves as model `smollm2` (also `smollm2:latest`, Ollama's default tag).
Requests go through the actors' mailboxes and so through the global concurrency limit.

Shapes follow Ollama: NDJSON streams (`application/x-ndjson`, `stream` defaults to true), `created_at`
in RFC 3339 with nanoseconds, `done` / `done_reason`, `{"error": "..."}` bodies (404 for an unknown
model, 400 for bad JSON or missing fields), an `{"error": ...}` line when a stream fails after it began.
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
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench import __version__
from workbench.errors import ModelNotFound, NotSupported, WorkbenchError
from workbench.metrics.request import RequestMetrics
from workbench.runtimes.base import ModelRuntimeActor, image_to_data_url
from workbench.runtimes.ollama_common import options_from_ollama
from workbench.runtimes.types import ChatMessage, Chunk, Embeddings, GenerationOptions, ImagePart, ImageURL, TextPart
from workbench.server.http import HTTPServer, Request, Responder

NDJSON = "application/x-ndjson"
FOREVER = "2318-11-11T00:00:00Z"  # expires_at of a model that never unloads (keep_alive < 0 in Ollama)


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


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
        now = rfc3339_nano()
        for actor in actors:
            served = Served(served_name(actor), actor, now)
            if tagged(served.name) in self.models:
                raise ValueError(f"two actors would both serve model {served.name!r}")
            self.models[tagged(served.name)] = served

    # ----- routing ----------------------------------------------------------------------------------------
    async def __call__(self, request: Request, responder: Responder) -> None:
        routes = {
            ("GET", "/"): self.root, ("HEAD", "/"): self.root,
            ("GET", "/api/version"): self.version, ("GET", "/api/tags"): self.tags,
            ("GET", "/api/ps"): self.ps, ("POST", "/api/show"): self.show,
            ("POST", "/api/chat"): self.chat, ("POST", "/api/generate"): self.generate,
            ("POST", "/api/embed"): self.embed, ("POST", "/api/embeddings"): self.embeddings,
            ("POST", "/api/pull"): self.pull,
        }
        route = routes.get((request.method, request.path))
        if route is None:
            if any(path == request.path for _, path in routes):
                await responder.send(405, b"405 method not allowed", "text/plain")
            else:
                await responder.send(404, b"404 page not found", "text/plain")
            return
        try:
            await route(request, responder)
        except BadRequest as error:
            if not responder.started:
                await responder.send_json(error.status, {"error": str(error)})

    def lookup(self, body: dict[str, Any]) -> Served:
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name:
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
        served = self.lookup(_json_body(request))
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
        body = _json_body(request)
        name = body.get("model") or body.get("name")
        known = isinstance(name, str) and tagged(name) in self.models
        status = {"status": "success"} if known else {
            "error": f"pull model manifest: file does not exist (workbench serve cannot pull models; it serves "
                     f"{', '.join(self.models) or 'none'})"
        }
        if body.get("stream", True):
            await responder.start(200, NDJSON)
            await responder.write(_line(status))
            await responder.end()
        else:
            await responder.send_json(200 if known else 404, status)

    # ----- generation -------------------------------------------------------------------------------------------
    async def chat(self, request: Request, responder: Responder) -> None:
        body = _json_body(request)
        served = self.lookup(body)
        raw_messages = body.get("messages") or []
        if not isinstance(raw_messages, list):
            raise BadRequest("messages must be a list")
        options = self._options(body)
        self._check_think(served, options)
        name = str(body["model"])
        if not raw_messages:  # Ollama loads the model and answers at once
            await self._single(responder, body, {
                "model": name, "created_at": rfc3339_nano(),
                "message": {"role": "assistant", "content": ""}, "done_reason": "load", "done": True,
            })
            return
        messages = [_message(item) for item in raw_messages]
        if not served.actor.capabilities.chat:
            raise BadRequest(f'"{name}" does not support chat')

        def frame(text: str, thinking: str) -> dict[str, Any]:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            return {"model": name, "created_at": rfc3339_nano(), "message": message, "done": False}

        await self._generation(responder, body, lambda: served.actor.chat(messages, options=options), frame)

    async def generate(self, request: Request, responder: Responder) -> None:
        body = _json_body(request)
        served = self.lookup(body)
        prompt = body.get("prompt") or ""
        if not isinstance(prompt, str):
            raise BadRequest("prompt must be a string")
        options = self._options(body)
        self._check_think(served, options)
        name = str(body["model"])
        if not prompt and not body.get("images"):
            await self._single(responder, body, {
                "model": name, "created_at": rfc3339_nano(), "response": "", "done": True, "done_reason": "load",
            })
            return
        images = [_image_bytes(item) for item in body.get("images") or []]
        system = body.get("system") if isinstance(body.get("system"), str) else None
        actor = served.actor
        if body.get("raw"):
            start = lambda: actor.complete(prompt, options=options)  # noqa: E731
        else:
            start = lambda: actor.generate(prompt, system=system, images=images, options=options)  # noqa: E731

        def frame(text: str, thinking: str) -> dict[str, Any]:
            item: dict[str, Any] = {"model": name, "created_at": rfc3339_nano(), "response": text}
            if thinking:
                item["thinking"] = thinking
            item["done"] = False
            return item

        await self._generation(responder, body, start, frame)

    def _options(self, body: dict[str, Any]) -> GenerationOptions:
        return _options(body, self.parameters)

    def _check_think(self, served: Served, options: GenerationOptions) -> None:
        if options.think not in (None, False) and not served.actor.capabilities.think:
            raise BadRequest(f'"{served.name}" does not support thinking')

    async def _single(self, responder: Responder, body: dict[str, Any], item: dict[str, Any]) -> None:
        if body.get("stream", True):
            await responder.start(200, NDJSON)
            await responder.write(_line(item))
            await responder.end()
        else:
            await responder.send_json(200, item)

    async def _generation(self, responder: Responder, body: dict[str, Any], start: Any, frame: Any) -> None:
        """Run one text operation and answer it streamed or whole; a disconnect cancels it."""
        try:
            reply = start()
        except (NotSupported, ValueError, FileNotFoundError) as error:
            raise BadRequest(str(error)) from None
        cancel_on_disconnect = asyncio.create_task(_cancel_when(responder, reply))
        try:
            if body.get("stream", True):
                await self._stream(responder, reply, frame)
            else:
                await self._whole(responder, reply, frame)
        finally:
            cancel_on_disconnect.cancel()
            if not reply.done():
                reply.cancel()

    async def _stream(self, responder: Responder, reply: Any, frame: Any) -> None:
        chunks: AsyncIterator[Chunk] = reply.__aiter__()
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            first = None
        except Exception as error:  # nothing sent yet: answer with a status, as Ollama does
            await responder.send_json(_status_for(error), {"error": str(error)})
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
            await responder.write(_line({"error": str(error)}))
        except Exception as error:  # noqa: BLE001 - a model failure mid-stream: tell the client, as Ollama does
            if isinstance(error, asyncio.CancelledError):
                raise
            await responder.write(_line({"error": f"{type(error).__name__}: {error}"}))
        await responder.end()

    async def _whole(self, responder: Responder, reply: Any, frame: Any) -> None:
        try:
            completion = await reply
        except Exception as error:
            await responder.send_json(_status_for(error), {"error": str(error)})
            return
        item = frame(completion.text, completion.thinking)
        item.update(_final_fields(completion.metrics, completion.finish_reason))
        await responder.send_json(200, item)

    # ----- embeddings -------------------------------------------------------------------------------------------
    async def embed(self, request: Request, responder: Responder) -> None:
        body = _json_body(request)
        served = self.lookup(body)
        given = body.get("input")
        inputs = [given] if isinstance(given, str) else given if isinstance(given, list) else None
        if inputs is None or not all(isinstance(text, str) for text in inputs):
            raise BadRequest("input must be a string or a list of strings")
        name = str(body["model"])
        if not inputs:
            await responder.send_json(200, {"model": name, "embeddings": []})
            return
        result = await self._embed(served, inputs, body)
        vectors = result.vectors if result.normalized else [_normalized(v) for v in result.vectors]
        answer: dict[str, Any] = {"model": name, "embeddings": vectors}
        if result.metrics is not None:
            answer["total_duration"] = int(result.metrics.e2e_s * 1e9)
            if result.metrics.input_tokens is not None:
                answer["prompt_eval_count"] = result.metrics.input_tokens
        await responder.send_json(200, answer)

    async def embeddings(self, request: Request, responder: Responder) -> None:
        """The legacy endpoint: one `prompt`, one `embedding`, as the model gives it (not normalised)."""
        body = _json_body(request)
        served = self.lookup(body)
        prompt = body.get("prompt") or ""
        if not isinstance(prompt, str):
            raise BadRequest("prompt must be a string")
        if not prompt:
            await responder.send_json(200, {"embedding": []})
            return
        result = await self._embed(served, [prompt], body)
        await responder.send_json(200, {"embedding": result.vectors[0]})

    async def _embed(self, served: Served, inputs: list[str], body: dict[str, Any]) -> Embeddings:
        if not served.actor.capabilities.embed:
            raise BadRequest(f'"{served.name}" does not support embeddings')
        try:
            return await served.actor.embed(inputs, options=self._options(body))
        except (NotSupported, ValueError) as error:
            raise BadRequest(str(error)) from None
        except ModelNotFound as error:
            raise BadRequest(str(error), 404) from None
        except Exception as error:
            raise BadRequest(str(error), 500) from None


# ----- helpers ---------------------------------------------------------------------------------------------------
def _json_body(request: Request) -> dict[str, Any]:
    if not request.body.strip():
        raise BadRequest("missing request body")
    try:
        body = json.loads(request.body)
    except ValueError as error:
        raise BadRequest(f"invalid JSON in request body: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def _options(body: dict[str, Any], parameters: dict[str, Any]) -> GenerationOptions:
    given = body.get("options")
    merged = {**parameters, **given} if isinstance(given, dict) else given if given is not None else parameters
    try:
        return options_from_ollama(merged, think=body.get("think"),
                                   keep_alive=body.get("keep_alive"), format=body.get("format"))
    except ValueError as error:
        raise BadRequest(str(error)) from None


def _image_bytes(item: Any) -> bytes:
    if not isinstance(item, str):
        raise BadRequest("images must be base64 strings")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("an image is not valid base64") from None


def _message(item: Any) -> ChatMessage:
    if not isinstance(item, dict):
        raise BadRequest("each message must be a JSON object")
    role = item.get("role")
    if role not in ("system", "user", "assistant", "tool"):
        raise BadRequest(f"invalid message role {role!r}: use system, user, assistant or tool")
    content = item.get("content") or ""
    if not isinstance(content, str):
        raise BadRequest("message content must be a string")
    images = [_image_bytes(image) for image in item.get("images") or []]
    if images:
        parts: list[Any] = [TextPart(text=content)] if content else []
        parts += [ImagePart(image_url=ImageURL(url=image_to_data_url(data))) for data in images]
        return ChatMessage(role=role, content=parts, thinking=item.get("thinking") or None)
    return ChatMessage(role=role, content=content, thinking=item.get("thinking") or None)


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


def _status_for(error: BaseException) -> int:
    if isinstance(error, (NotSupported, ValueError)):
        return 400
    if isinstance(error, ModelNotFound):
        return 404
    return 500


def _line(item: dict[str, Any]) -> bytes:
    return (json.dumps(item, ensure_ascii=False) + "\n").encode("utf-8")


def _normalized(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else list(vector)


def _parameter_size(parameters: int | None) -> str:
    if not parameters:
        return ""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if parameters >= scale:
            return f"{parameters / scale:.1f}{suffix}".replace(".0", "")
    return str(parameters)


async def _cancel_when(responder: Responder, reply: Any) -> None:
    await responder.disconnected.wait()
    reply.cancel()


# ----- the server -------------------------------------------------------------------------------------------------
class OllamaAPIServer:
    """An HTTP server speaking Ollama's API over `actors` (started by the caller, or by `start_actors`)."""

    def __init__(self, actors: Sequence[ModelRuntimeActor], host: str = "127.0.0.1", port: int = 11434,
                 parameters: dict[str, Any] | None = None) -> None:
        self.actors = list(actors)
        self.api = OllamaAPI(self.actors, parameters)
        self.http = HTTPServer(self.api, host, port)

    @property
    def url(self) -> str:
        return self.http.url

    async def start(self) -> None:
        await self.http.start()

    async def close(self) -> None:
        await self.http.close()

    async def __aenter__(self) -> OllamaAPIServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve(specs: Sequence[str], host: str = "127.0.0.1", port: int = 11434,
                ready: Any = None, parameters: dict[str, Any] | None = None) -> None:
    """Create and start the actors, serve until cancelled, then stop them."""
    from workbench.runtimes.registry import create_actor

    actors = [create_actor(spec) for spec in specs]
    try:
        for actor in actors:
            actor.start()
        for actor in actors:
            await actor.wait_ready()
        server = OllamaAPIServer(actors, host, port, parameters)
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
