"""A loopback server that replays the documented stream shapes of llama.cpp's `llama-server` and vLLM's
OpenAI server, and misbehaves on purpose, chosen by the request's model name.

Shapes (llama.cpp tools/server/README.md, its issues #15443/#16048, vLLM's OpenAI server):
- `llamacpp`: deltas, a stop chunk (`finish_reason: "stop"`, empty delta), then, as asked for with
  `stream_options.include_usage`, a chunk with empty `choices`, `usage` and llama.cpp's `timings`.
- `llamacpp-old`: older llama-server: `usage` and `timings` on the stop chunk itself, no usage chunk.
- `vllm`: `reasoning_content` deltas before the answer, `"usage": null` on every chunk, then the usage
  chunk with empty `choices` (with `prompt_tokens_details.cached_tokens`), and vLLM's per-request
  `metrics` on it when the request asked with `include_metrics`; `/v1/models` says `owned_by: vllm`.
- `nousage`: a server that sends no usage at all; `thinktags`: `<think>...</think>` left in content.
Faults: `missing` 404 (OpenAI error shape), `broken` 500, `busy` 429, `loading` 503 "Loading model", `killed` (connection aborted
mid-answer), `truncated` (stream ends cleanly without a finish_reason), `malformed` (an SSE line that
is not JSON), `midstream` (an `error` event after 200), `slow` (answers after `slow_s`). A request without
the expected bearer token (when `api_key` is set) gets 401. `/health` answers 503 "Loading model" for
the first `loading_polls` calls. `/v1/models` lists llama.cpp's `meta` and `architecture` (model
`textonly` reads no images).
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

from tests.ollama.support import FaultServer

TIMINGS = {"cache_n": 0, "prompt_n": 12, "prompt_ms": 30.958, "prompt_per_token_ms": 2.58,
           "prompt_per_second": 387.6, "predicted_n": 3, "predicted_ms": 60.5,
           "predicted_per_token_ms": 20.17, "predicted_per_second": 49.59}
USAGE = {"completion_tokens": 3, "prompt_tokens": 12, "total_tokens": 15}
# vLLM's per-request metrics (PR #46768, docs/features/per_request_metrics.md): on the last message
VLLM_METRICS = {"time_to_first_token_ms": 85.2, "generation_time_ms": 1240.5, "queue_time_ms": 12.3,
                "mean_itl_ms": 9.1, "tokens_per_second": 103.2}


def error_body(status: int, message: str, kind: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "type": kind}}


class ReplayServer(FaultServer):
    """FaultServer's loopback HTTP plumbing, speaking the OpenAI API's shapes instead of Ollama's."""

    def __init__(self, *, api_key: str | None = None, slow_s: float = 2.0, models: list[str] | None = None) -> None:
        super().__init__(slow_s=slow_s)
        self.api_key = api_key
        self.models = models or ["llamacpp"]
        self.loading_polls = 0
        self.requests: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        method, path, headers, payload = await self.read_request(reader)
        self.headers_seen.append(headers)
        if path == "/health":
            if self.loading_polls > 0:
                self.loading_polls -= 1
                return await self._json(writer, 503, error_body(503, "Loading model", "unavailable_error"))
            return await self._json(writer, 200, {"status": "ok"})
        if path == "/props":  # llama.cpp's server properties (trimmed)
            return await self._json(writer, 200, {"total_slots": 1, "build_info": "b6497-cd08fc3e",
                                                  "modalities": {"vision": False}})
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return await self._json(writer, 401, error_body(401, "Invalid API Key", "authentication_error"))
        if path == "/v1/models":
            data = [{"id": name, "object": "model", "created": 1735142223,
                     "owned_by": "vllm" if name == "vllm" else "llamacpp",
                     "architecture": {"input_modalities": ["text"] if name == "textonly" else ["text", "image"],
                                      "output_modalities": ["text"]},
                     "meta": {"vocab_type": 2, "n_vocab": 49152, "n_ctx_train": 8192, "n_embd": 576,
                              "n_params": 134515008, "size": 270898368}} for name in self.models]
            return await self._json(writer, 200, {"object": "list", "data": data})
        self.requests.append(payload)
        model = str(payload.get("model", ""))
        if path == "/v1/embeddings":
            inputs = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
            data = [{"object": "embedding", "index": i, "embedding": [0.6, 0.8, 0.0]} for i in range(len(inputs))]
            data.reverse()  # servers may answer out of order; `index` says which is which
            return await self._json(writer, 200, {"object": "list", "data": data, "model": model,
                                                  "usage": {"prompt_tokens": 7, "total_tokens": 7}})
        if model == "missing":
            return await self._json(writer, 404, error_body(404, "model 'missing' not found", "not_found_error"))
        if model == "broken":
            return await self._json(writer, 500, error_body(500, "llama_decode failed", "server_error"))
        if model == "loading":
            return await self._json(writer, 503, error_body(503, "Loading model", "unavailable_error"))
        if model == "busy":
            return await self._json(writer, 429, error_body(429, "too many requests", "rate_limit_error"))
        if model == "slow":
            await asyncio.sleep(self.slow_s)
        chat = path == "/v1/chat/completions"
        events = self._events(model, chat, bool((payload.get("stream_options") or {}).get("include_usage")),
                              bool(payload.get("include_metrics")))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for index, event in enumerate(events):
            if model == "killed" and index == 2:
                await asyncio.sleep(0.05)
                writer.transport.abort()
                return False
            data = event if isinstance(event, bytes) else b"data: " + json.dumps(event).encode() + b"\n\n"
            await self._chunk(writer, data)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    def _events(self, model: str, chat: bool, include_usage: bool, include_metrics: bool = False) -> list[Any]:
        def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
            if chat:
                choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": (delta or {}).get("content", ""), "finish_reason": finish}
            return {"id": "chatcmpl-x", "object": "chat.completion.chunk" if chat else "text_completion",
                    "created": 1757141666, "model": model, "choices": [choice], **extra}

        words = ["Hel", "lo", " there"]
        if model == "thinktags":
            words = ["<think>", "pondering", "</think>", "Hello"]
        events: list[Any] = []
        if model == "vllm":
            events.append(chunk({"role": "assistant", "content": ""}, usage=None))
            events += [chunk({"reasoning_content": part}, usage=None) for part in ("Think", "ing.")]
            events += [chunk({"content": word}, usage=None) for word in words]
            events.append(chunk({}, "stop", usage=None))
            if include_usage:
                events.append({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1757141666,
                               "model": model, "choices": [],
                               "usage": {**USAGE, "completion_tokens": 5,
                                         "prompt_tokens_details": {"cached_tokens": 4}},
                               **({"metrics": VLLM_METRICS} if include_metrics else {})})
        elif model == "llamacpp-old":
            events += [chunk({"content": word}) for word in words]
            events.append(chunk({}, "stop", usage=USAGE, timings=TIMINGS))
        else:
            events += [chunk({"content": word}) for word in words]
            if model == "malformed":
                events.append(b"data: {this is not json\n\n")
            if model == "midstream":
                events.append(error_body(500, "the slot was released: out of memory", "server_error"))
            if model == "truncated":
                return events
            events.append(chunk({}, "length" if model == "short" else "stop"))
            if include_usage and model not in ("nousage", "thinktags"):
                events.append({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1757141666,
                               "model": model, "choices": [], "usage": USAGE, "timings": TIMINGS})
        events.append(b"data: [DONE]\n\n")
        return events

    async def _json(self, writer: asyncio.StreamWriter, status: int, value: Any) -> bool:
        body = json.dumps(value).encode()
        writer.write(f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json; "
                     f"charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        return True
