"""`workbench serve` also speaks the OpenAI API, beside Ollama's, as Ollama itself does.

`/v1/chat/completions`, `/v1/completions` (streamed as server-sent events when `stream` is true,
ending with `data: [DONE]`), `/v1/embeddings` (`float` or `base64` vectors, unit length) and
`/v1/models`, over the same actors and names as the Ollama API (`smollm2`, or `smollm2:latest`).

- `stream_options: {"include_usage": true}` adds OpenAI's last chunk: empty `choices` and `usage`
  (every earlier chunk then carries `"usage": null`, as OpenAI sends it).
- Thinking: `reasoning_effort` (`none` turns it off) or `chat_template_kwargs.enable_thinking` (as
  llama.cpp and vLLM take it) ask for it; thinking streams in `delta.reasoning_content`, apart from
  the answer, as vLLM, llama.cpp and DeepSeek send it.
- Our own client-side figures for the request (queued, TTFT, E2E, output tokens/s) ride along in a
  `workbench_metrics` object on the final chunk or response, labelled as the server's, the way
  llama.cpp adds `timings`; OpenAI clients ignore it.
- `tools` and a `response_format` other than text are refused (400): no runtime here can honour them,
  and an answer that ignored them would pass for a real one.
- Errors have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`: 400 for a body that
  fails validation (naming the field), 404 `model_not_found`, 413 for a prompt over the limit, 503
  `model_not_running` for a model whose actor is stopped or failed; an
  error after a stream began is sent as one `data: {"error": ...}` event and the stream ends.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workbench.errors import WorkbenchError
from workbench.metrics.request import RequestMetrics
from workbench.runtimes.ollama_common import options_from_ollama
from workbench.runtimes.types import ChatMessage, Chunk, GenerationOptions, ImagePart, ImageURL, TextPart
from workbench.server.bodies import BadRequest, check_prompt_size, json_object, validated
from workbench.server.http import Request, Responder
from workbench.server.ollama_api import Served, answer_reply, refusal_for, tagged, unit_vector
from workbench.server.routes import Route

SSE = "text/event-stream"
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
               413: "invalid_request_error", 429: "rate_limit_error"}


def openai_error(path: str, status: int, message: str, *, code: str | None = None,
                 param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body; also the shape of the transport's own refusals under `/v1/`."""
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"),
                      "param": param, "code": code}}


# ----- request bodies (OpenAI's API reference; unknown fields are ignored) -------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextContent(_Body):
    type: Literal["text"]
    text: str


class ImageURLBody(_Body):
    url: str
    detail: str | None = None


class ImageContent(_Body):
    type: Literal["image_url"]
    image_url: ImageURLBody


ContentPart = Annotated[TextContent | ImageContent, Field(discriminator="type")]


class ChatMessageBody(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    reasoning_content: str | None = None


class StreamOptions(_Body):
    include_usage: bool | None = None


class _Sampling(_Body):
    model: str = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=1)  # llama.cpp and vLLM take it too
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1)


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]


class ChatCompletionBody(_Sampling):
    messages: list[ChatMessageBody] = Field(min_length=1)
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    response_format: ResponseFormat | None = None


class CompletionBody(_Sampling):
    prompt: str | list[str]


class EmbeddingsBody(_Body):
    model: str = Field(min_length=1)
    input: str | list[str]
    encoding_format: Literal["float", "base64"] | None = None


class OpenAIAPI:
    """Routes OpenAI's endpoints to the served actors (the same `Served` table as the Ollama API)."""

    def __init__(self, models: dict[str, Served], parameters: dict[str, Any] | None = None) -> None:
        self.models = models
        self.parameters = dict(parameters or {})

    def routes(self) -> list[Route]:
        table: list[tuple[str, str, Callable[[Request, Responder], Awaitable[None]]]] = [
            ("GET", "/v1/models", self.list_models),
            ("POST", "/v1/chat/completions", self.chat_completions),
            ("POST", "/v1/completions", self.completions),
            ("POST", "/v1/embeddings", self.embeddings),
        ]
        for key, served in self.models.items():  # GET /v1/models/{id}, under both names
            for name in {served.name, key}:
                table.append(("GET", f"/v1/models/{name}", self._model_entry(served)))
        return [Route(method, path, handler) for method, path, handler in table]

    def lookup(self, name: str) -> Served:
        served = self.models.get(tagged(name))
        if served is None:
            known = ", ".join(item.name for item in self.models.values()) or "none"
            raise BadRequest(f"The model `{name}` does not exist (this server has: {known})", 404,
                             code="model_not_found", param="model")
        return served

    # ----- /v1/models -------------------------------------------------------------------------------------
    async def list_models(self, request: Request, responder: Responder) -> None:
        data = [_model_object(served) for served in self.models.values()]
        await responder.send_json(200, {"object": "list", "data": data})

    @staticmethod
    def _model_entry(served: Served) -> Callable[[Request, Responder], Awaitable[None]]:
        async def answer(request: Request, responder: Responder) -> None:
            await responder.send_json(200, _model_object(served))
        return answer

    # ----- generation -------------------------------------------------------------------------------------
    def _options(self, body: _Sampling, think: Any = None) -> GenerationOptions:
        stop = [body.stop] if isinstance(body.stop, str) else body.stop
        fields: dict[str, Any] = {
            "max_tokens": body.max_completion_tokens or body.max_tokens, "temperature": body.temperature,
            "top_p": body.top_p, "top_k": body.top_k, "seed": body.seed, "stop": stop, "think": think,
        }
        given = {key: value for key, value in fields.items() if value is not None}
        try:  # `--parameter` defaults are Ollama's option names (num_predict...), as for the Ollama API
            defaults = options_from_ollama(self.parameters).model_dump(exclude_unset=True)
            return GenerationOptions.model_validate({**defaults, **given})
        except ValueError as error:
            raise BadRequest(f"invalid options: {error}") from None

    def _check(self, served: Served, body: _Sampling, operation: str) -> None:
        if body.n not in (None, 1):
            raise BadRequest("n must be 1: workbench serve gives one choice per request", param="n")
        if not served.actor.capabilities.supports(operation):
            raise BadRequest(f'"{served.name}" does not support {operation}')

    async def chat_completions(self, request: Request, responder: Responder) -> None:
        body = validated(ChatCompletionBody, json_object(request))
        served = self.lookup(body.model)
        self._check(served, body, "chat")
        if body.tools:  # an answer that ignored them would look like a model that chose not to call one
            raise BadRequest("tools are not supported: workbench's runtimes have no tool calling", param="tools")
        if body.response_format is not None and body.response_format.type != "text":
            raise BadRequest(f"response_format {body.response_format.type} is not supported: workbench's "
                             "runtimes have no constrained decoding", param="response_format")
        think = _think_from(body)
        if think not in (None, False) and not served.actor.capabilities.think:
            raise BadRequest(f'"{served.name}" does not support thinking', param="reasoning_effort")
        options = self._options(body, think)
        check_prompt_size(*(_text_of(message) for message in body.messages))
        messages = [_chat_message(message) for message in body.messages]

        def start() -> Any:
            return served.actor.chat(messages, options=options)

        await self._generation(responder, body, served, start, chat=True)

    async def completions(self, request: Request, responder: Responder) -> None:
        body = validated(CompletionBody, json_object(request))
        served = self.lookup(body.model)
        self._check(served, body, "complete")
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1:
            raise BadRequest("prompt must be one string: workbench serve completes one prompt per request",
                             param="prompt")
        check_prompt_size(prompts[0])
        options = self._options(body)

        def start() -> Any:
            return served.actor.complete(prompts[0], options=options)

        await self._generation(responder, body, served, start, chat=False)

    async def _generation(self, responder: Responder, body: _Sampling, served: Served,
                          start: Callable[[], Any], *, chat: bool) -> None:
        try:
            reply = start()
        except (WorkbenchError, ValueError) as error:  # a stopped actor refuses at once: 503, not 500
            raise refusal_for(error, served) from None
        shape = _Shape(body.model, chat, bool(body.stream_options and body.stream_options.include_usage))
        await answer_reply(responder, reply, self._stream(responder, served, reply, shape) if body.stream
                           else self._whole(responder, served, reply, shape))

    async def _refuse(self, responder: Responder, served: Served, error: Exception) -> None:
        refusal = refusal_for(error, served)
        await responder.send_json(refusal.status, openai_error(responder.path, refusal.status, str(refusal),
                                                               code=refusal.code))

    async def _stream(self, responder: Responder, served: Served, reply: Any, shape: _Shape) -> None:
        chunks: AsyncIterator[Chunk] = reply.__aiter__()
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            first = None
        except Exception as error:  # nothing sent yet: answer with a status
            await self._refuse(responder, served, error)
            return
        await responder.start(200, SSE)
        try:
            await responder.write(_event(shape.chunk(role=True)))
            chunk = first
            while chunk is not None:
                if chunk.done:
                    final = shape.chunk(finish_reason=_finish(chunk.finish_reason))
                    if not shape.include_usage:
                        final["workbench_metrics"] = _figures(chunk.metrics)
                    await responder.write(_event(final))
                    if shape.include_usage:
                        await responder.write(_event(shape.usage_chunk(chunk.metrics)))
                else:
                    await responder.write(_event(shape.chunk(text=chunk.text, thinking=chunk.thinking)))
                chunk = await anext(chunks, None)
            await responder.write(b"data: [DONE]\n\n")
        except Exception as error:  # noqa: BLE001 - a failure mid-stream: tell the client in the stream
            if isinstance(error, asyncio.CancelledError):
                raise
            refusal = refusal_for(error, served)
            await responder.write(_event(openai_error(responder.path, refusal.status, str(refusal),
                                                      code=refusal.code)))
        await responder.end()

    async def _whole(self, responder: Responder, served: Served, reply: Any, shape: _Shape) -> None:
        try:
            completion = await reply
        except Exception as error:
            await self._refuse(responder, served, error)
            return
        await responder.send_json(200, shape.whole(completion.text, completion.thinking,
                                                   _finish(completion.finish_reason), completion.metrics))

    # ----- embeddings -----------------------------------------------------------------------------------------
    async def embeddings(self, request: Request, responder: Responder) -> None:
        body = validated(EmbeddingsBody, json_object(request))
        served = self.lookup(body.model)
        inputs = [body.input] if isinstance(body.input, str) else body.input
        if not inputs:
            raise BadRequest("input must not be empty", param="input")
        if not served.actor.capabilities.embed:
            raise BadRequest(f'"{served.name}" does not support embeddings')
        check_prompt_size(*inputs)
        try:
            result = await served.actor.embed(inputs)
        except Exception as error:
            raise refusal_for(error, served) from None
        vectors = result.vectors if result.normalized else [unit_vector(v) for v in result.vectors]
        as_base64 = body.encoding_format == "base64"
        data = [{"object": "embedding", "index": index,
                 "embedding": _base64_floats(vector) if as_base64 else vector}
                for index, vector in enumerate(vectors)]
        tokens = (result.metrics.input_tokens if result.metrics else None) or 0
        await responder.send_json(200, {"object": "list", "data": data, "model": body.model,
                                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


# ----- shapes ----------------------------------------------------------------------------------------------------
class _Shape:
    """The objects of one answer: `chat.completion(.chunk)` or `text_completion`, one id throughout."""

    def __init__(self, model: str, chat: bool, include_usage: bool) -> None:
        self.model = model
        self.chat = chat
        self.include_usage = include_usage
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())

    def _head(self, streamed: bool) -> dict[str, Any]:
        kind = ("chat.completion.chunk" if streamed else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "system_fingerprint": "workbench"}

    def chunk(self, *, text: str = "", thinking: str = "", role: bool = False,
              finish_reason: str | None = None) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {}
            if role:
                delta = {"role": "assistant", "content": ""}
            if text:
                delta["content"] = text
            if thinking:
                delta["reasoning_content"] = thinking
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        item = {**self._head(True), "choices": [choice]}
        if self.include_usage:
            item["usage"] = None
        return item

    def usage_chunk(self, metrics: RequestMetrics | None) -> dict[str, Any]:
        return {**self._head(True), "choices": [], "usage": _usage(metrics), "workbench_metrics": _figures(metrics)}

    def whole(self, text: str, thinking: str, finish_reason: str, metrics: RequestMetrics | None) -> dict[str, Any]:
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                message["reasoning_content"] = thinking
            choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        return {**self._head(False), "choices": [choice], "usage": _usage(metrics),
                "workbench_metrics": _figures(metrics)}


def _model_object(served: Served) -> dict[str, Any]:
    return {"id": served.name, "object": "model", "created": _created(served), "owned_by": "workbench"}


def _created(served: Served) -> int:
    """When the server began serving it (Unix seconds), from the RFC 3339 time the Ollama API shows."""
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(served.started_at.split(".")[0].rstrip("Z") + "+00:00").timestamp())
    except ValueError:
        return int(time.time())


def _usage(metrics: RequestMetrics | None) -> dict[str, int]:
    prompt = (metrics.input_tokens if metrics else None) or 0
    completion = (metrics.output_tokens if metrics else None) or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _figures(metrics: RequestMetrics | None) -> dict[str, float]:
    """workbench's own measurements of the request, in the server: for a client to keep, labelled."""
    if metrics is None:
        return {}
    figures = {"queued_s": metrics.queued_s, "ttft_s": metrics.ttft_s, "e2e_s": metrics.e2e_s,
               "output_tokens_per_s": metrics.output_tokens_per_s, "decode_tokens_per_s": metrics.decode_tokens_per_s}
    return {key: round(value, 6) for key, value in figures.items() if value is not None}


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def _think_from(body: ChatCompletionBody) -> Any:
    if body.reasoning_effort is not None:
        effort = body.reasoning_effort
        return False if effort == "none" else "low" if effort == "minimal" else effort
    kwargs = body.chat_template_kwargs or {}
    enable = kwargs.get("enable_thinking")
    if enable is not None and not isinstance(enable, bool):
        raise BadRequest("chat_template_kwargs.enable_thinking must be true or false",
                         param="chat_template_kwargs.enable_thinking")
    return enable


def _text_of(message: ChatMessageBody) -> str:
    if isinstance(message.content, list):
        return "".join(part.text for part in message.content if isinstance(part, TextContent))
    return message.content or ""


def _chat_message(message: ChatMessageBody) -> ChatMessage:
    role = "system" if message.role == "developer" else message.role
    try:
        if isinstance(message.content, list):
            parts: list[Any] = [
                TextPart(text=part.text) if isinstance(part, TextContent)
                else ImagePart(image_url=ImageURL(url=part.image_url.url))
                for part in message.content
            ]
            return ChatMessage(role=role, content=parts, thinking=message.reasoning_content or None)
        return ChatMessage(role=role, content=message.content or "", thinking=message.reasoning_content or None)
    except ValidationError as error:  # an image that is not a data: URL, or not base64
        reason = error.errors()[0]["msg"].removeprefix("Value error, ") if error.errors() else str(error)
        raise BadRequest(f"invalid message: {reason}", param="messages") from None


def _event(item: dict[str, Any]) -> bytes:
    import json

    return b"data: " + json.dumps(item, ensure_ascii=False).encode("utf-8") + b"\n\n"


def _base64_floats(vector: list[float]) -> str:
    """OpenAI's `base64` encoding: little-endian float32, as its client decodes it."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
