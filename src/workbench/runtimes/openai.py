"""`openai`: any server speaking the OpenAI HTTP API (llama.cpp's llama-server, vLLM, SGLang, LM Studio,
LocalAI, Ollama's /v1, `workbench serve`), with httpx.

Spec `openai:MODEL@BASE_URL`, BASE_URL with its `/v1` (`openai:smollm2@http://127.0.0.1:8080/v1`;
a URL with no path gets `/v1`; no URL: `OPENAI_BASE_URL`, else llama-server's default
`http://127.0.0.1:8080/v1`). MODEL `-` (or nothing) takes the only model `/v1/models` lists.

- `chat`, `think`, `summarize_*` and `generate` stream `/chat/completions` (SSE); `complete` streams
  `/completions` (raw continuation); `embed` sends the whole batch to `/embeddings`.
- Thinking arrives in `delta.reasoning_content` (vLLM, SGLang, llama.cpp, DeepSeek; newer vLLM names
  it `reasoning`), kept apart from the answer; a server that leaves `<think>...</think>` in the content
  is split with the same `ThinkSplitter` the in-process runtimes use. Thinking is asked for with
  `reasoning_effort` for a level, or `chat_template_kwargs: {"enable_thinking": ...}` for on/off.
- Metrics: TTFT/ITL/E2E are ours, as for every runtime. Token counts are the server's `usage`, asked
  for with `stream_options.include_usage` and taken from the last chunk (empty `choices`), from the stop
  chunk, or from any chunk that has it; when a server sends none, every content chunk counts as one
  token and `server["openai_tokens_counted_from_chunks"]` says so. Figures a server reports about
  itself stay in `server`, labelled: llama.cpp's `timings` as `llamacpp_*`, `usage` details (cached
  prompt tokens) as `openai_*`, vLLM's per-request `metrics` (asked for with `include_metrics` when
  `/v1/models` says `owned_by: vllm`; the server needs `--enable-per-request-metrics`) as `vllm_*`,
  `workbench serve`'s own `workbench_metrics` as `served_*`.
- Keys: `WORKBENCH_OPENAI_KEY_<HOST>_<PORT>` (the host's letters and digits, others as `_`, upper
  case: `WORKBENCH_OPENAI_KEY_127_0_0_1_8080`) or else `OPENAI_API_KEY`, sent as a bearer token. It
  lives only in the HTTP client's headers: never in the spec, the stats, or any saved file.
- Memory: for a server on this machine, the process listening on the port (psutil), as for a local
  Ollama; llama.cpp's `/v1/models` `meta.size` (the model file's size) is shown beside it, labelled.
- Loading: llama.cpp answers `/health` with 503 "Loading model" while it loads; the actor reports
  that as loading progress and waits (up to `load_wait_s`) instead of failing.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from workbench.actors import events
from workbench.actors.actor import Message
from workbench.actors.events import ActorEvent
from workbench.errors import ModelNotFound, RuntimeHTTPError, RuntimeProtocolError, WorkbenchError
from workbench.metrics.request import RequestMetrics
from workbench.metrics.sampler import ProcessTarget
from workbench.runtimes.base import Availability, ChatRequest, EmbedRequest, GenerateRequest
from workbench.runtimes.ollama_common import ServerProcess, parse_ollama_host
from workbench.runtimes.rest import RESTfulModelRuntimeActor
from workbench.runtimes.streamtext import ThinkSplitter
from workbench.runtimes.types import Capabilities, ChatMessage, Chunk, Embeddings, GenerationOptions, Usage

DEFAULT_URL = "http://127.0.0.1:8080/v1"
KEY_PREFIX = "WORKBENCH_OPENAI_KEY_"
ANY_MODEL = "-"


def key_variable(base_url: str) -> str:
    """The per-host environment variable for a server's API key."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = re.sub(r"[^A-Za-z0-9]", "_", parts.hostname or "")
    return f"{KEY_PREFIX}{host}_{port}".upper()


def api_key_for(base_url: str) -> str | None:
    """The per-host key, else `OPENAI_API_KEY`, else None (local servers usually need none)."""
    return os.environ.get(key_variable(base_url)) or os.environ.get("OPENAI_API_KEY") or None


def normalize_base_url(url: str) -> str:
    """`http://h:8080` → `http://h:8080/v1`; a URL without a scheme gets `http://`."""
    text = url.strip().rstrip("/")
    if "://" not in text:
        text = f"http://{text}"
    if not urlsplit(text).path:
        text += "/v1"
    return text


def server_root(base_url: str) -> str:
    """The server's root, where llama.cpp's `/health` lives: the base URL without its `/v1`."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def openai_message(body: Any) -> str | None:
    """The `message` of an OpenAI error body `{"error": {"message", "type", "code"}}` (or a plain one)."""
    if isinstance(body, dict):
        error = body.get("error", body.get("detail"))
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if error is not None:
            return str(error)
        if body.get("message"):
            return str(body["message"])
    return str(body) if body else None


class OpenAIRuntimeActor(RESTfulModelRuntimeActor):
    runtime: ClassVar[str] = "openai"
    service: ClassVar[str] = "OpenAI-compatible server"
    description: ClassVar[str] = "any OpenAI-compatible server (llama.cpp, vLLM, SGLang, LM Studio...), with httpx"
    default_url: ClassVar[str] = DEFAULT_URL
    health_path: ClassVar[str] = "/models"
    load_wait_s: ClassVar[float] = 600.0
    poll_s: ClassVar[float] = 0.5

    def __init__(self, model: str = ANY_MODEL, **kwargs: Any) -> None:
        super().__init__(model or ANY_MODEL, **kwargs)
        self.capabilities = Capabilities(think=True, embed=True, summarize_image=True)
        host = parse_ollama_host(self.base_url)
        self.server_process = ServerProcess(host, name="OpenAI-compatible server")
        self.model_entry: dict[str, Any] = {}

    @classmethod
    def resolve_url(cls, host: str | None) -> str:
        return normalize_base_url(host or os.environ.get("OPENAI_BASE_URL") or cls.default_url)

    @classmethod
    def _headers(cls, base_url: str) -> dict[str, str]:
        key = api_key_for(base_url)
        return {"Authorization": f"Bearer {key}"} if key else {}

    @classmethod
    async def availability(cls, host: str | None = None) -> Availability:
        url = cls.resolve_url(host)
        try:
            async with httpx.AsyncClient(timeout=2.0, headers=cls._headers(url)) as client:
                loading = await _loading(client, url)
                if loading:
                    return Availability(True, f"{cls.service} at {url} is loading its model ({loading})")
                response = await client.get(f"{url}/models")
        except httpx.HTTPError as error:
            return Availability(False, f"{cls.service} not reachable at {url} ({type(error).__name__})")
        if response.status_code >= 400:
            message = openai_message(_json_or_text(response)) or ""
            return Availability(False, f"{cls.service} at {url} answered HTTP {response.status_code} {message}".strip())
        try:
            models = [str(item.get("id")) for item in response.json().get("data") or []]
        except (ValueError, AttributeError):
            return Availability(False, f"{url}/models did not answer with an OpenAI model list")
        shown = ", ".join(models[:5]) + (" ..." if len(models) > 5 else "")
        return Availability(True, f"{cls.service} answers at {url} (models: {shown or 'none'})")

    # ----- lifecycle ------------------------------------------------------------------------------------------
    async def on_start(self) -> None:
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout,
                                         headers=self._headers(self.base_url))
        await self._wait_while_loading()
        await self._choose_model()

    async def _wait_while_loading(self) -> None:
        """llama.cpp answers 503 "Loading model" on /health while loading: report progress and wait."""
        deadline = time.monotonic() + self.load_wait_s
        while True:
            try:
                loading = await _loading(self.client, self.base_url)
            except httpx.HTTPError:
                return  # unreachable now: the first request says so clearly
            if not loading:
                return
            self.emit(ActorEvent(events.PROGRESS, self.name, data=(0.0, f"server is loading its model ({loading})")))
            if time.monotonic() > deadline:
                raise WorkbenchError(f"{self.service} at {self.base_url} was still loading its model after "
                                     f"{self.load_wait_s:g} s ({loading})")
            await asyncio.sleep(self.poll_s)

    async def _choose_model(self) -> None:
        """Resolve `-` to the only model listed; note what `/models` says about ours (llama.cpp's meta)."""
        try:
            answer = await self.request_json("GET", "/models")
            listed = [item for item in (answer.get("data") or []) if isinstance(item, dict)] \
                if isinstance(answer, dict) else []
        except WorkbenchError:
            if self.model == ANY_MODEL:
                raise
            return  # some servers have no /models; the first request reports any real problem
        if self.model == ANY_MODEL:
            if len(listed) != 1:
                names = ", ".join(str(item.get("id")) for item in listed) or "none"
                raise ModelNotFound(f"{self.service} at {self.base_url} lists {len(listed)} models ({names}): "
                                    f"name one, e.g. openai:{listed[0].get('id') if listed else 'MODEL'}@{self.base_url}")
            self.model = str(listed[0].get("id"))
        entry = next((item for item in listed if item.get("id") == self.model), None)
        if entry is not None:
            self.model_entry = entry
            modalities = (entry.get("architecture") or {}).get("input_modalities")
            if isinstance(modalities, list) and "image" not in modalities:
                notes = {**self.capabilities.notes, "summarize_image": f"/v1/models says {self.model} reads no images"}
                self.capabilities = self.capabilities.model_copy(update={"summarize_image": False, "notes": notes})

    # ----- errors ---------------------------------------------------------------------------------------------
    def error_for_status(self, status_code: int, body: Any, url: str) -> Exception:
        text = openai_message(body) or "no details"
        if status_code == 401 or status_code == 403:
            text += (f" (set {key_variable(self.base_url)} or OPENAI_API_KEY to the server's API key)")
        elif status_code == 404 and "model" in text.lower():
            return ModelNotFound(f"model {self.model!r} not found at {self.base_url}: {text}")
        elif status_code == 429:
            text += " (the server is rate limiting or full: try again later or lower the concurrency)"
        elif status_code == 503 and "loading" in text.lower():
            text += " (the server is still loading its model)"
        return RuntimeHTTPError(status_code, text, url)

    def error_in_stream(self, item: Any, url: str) -> Exception | None:
        if not isinstance(item, dict):
            return RuntimeProtocolError(f"unexpected event in the stream from {url}: {str(item)[:120]}")
        if item.get("error"):
            return WorkbenchError(f"{self.service} reported an error during the stream from {url}: "
                                  f"{openai_message(item)}")
        return None

    # ----- operations -------------------------------------------------------------------------------------------
    def stream_chat(self, request: ChatRequest, message: Message) -> AsyncIterator[Chunk]:
        body = {"model": self.model, "messages": [_wire_message(m) for m in request.messages],
                **_sampling(request.options), **_thinking(request.options, self.base_url)}
        return self._chunks("/chat/completions", body, think=bool(request.options.think))

    def stream_generate(self, request: GenerateRequest, message: Message) -> AsyncIterator[Chunk]:
        if request.raw:
            body = {"model": self.model, "prompt": request.prompt, **_sampling(request.options)}
            return self._chunks("/completions", body, think=False)
        messages = [ChatMessage(role="system", content=request.system)] if request.system else []
        content: Any = request.prompt
        if request.images:
            content = [{"type": "text", "text": request.prompt},
                       *({"type": "image_url", "image_url": {"url": url}} for url in request.images)]
        messages.append(ChatMessage.model_validate({"role": "user", "content": content}))
        return self.stream_chat(ChatRequest(messages=messages, options=request.options), message)

    async def _chunks(self, path: str, body: dict[str, Any], *, think: bool) -> AsyncIterator[Chunk]:
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        if self.model_entry.get("owned_by") == "vllm":
            body["include_metrics"] = True  # vLLM's per-request metrics (with --enable-per-request-metrics)
        splitter = ThinkSplitter() if think else None
        reasoning_seen = False
        finish_reason: str | None = None
        usage: dict[str, Any] | None = None
        server: dict[str, float] = {}
        counted = 0
        async for item in self.stream_json("POST", path, body, sse=True):
            if isinstance(item.get("usage"), dict):
                usage = item["usage"]
            server.update(_server_figures(item))
            for choice in item.get("choices") or []:
                if not isinstance(choice, dict):
                    raise RuntimeProtocolError(f"unexpected choice in the stream from {self.base_url}{path}: "
                                               f"{str(choice)[:120]}")
                delta = choice.get("delta") if "delta" in choice else {"content": choice.get("text")}
                delta = delta if isinstance(delta, dict) else {}
                reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
                text = delta.get("content") or ""
                if reasoning:
                    reasoning_seen = True
                    counted += 1
                    yield Chunk(thinking=str(reasoning), tokens=1)
                if text:
                    counted += 1
                    if splitter is not None and not reasoning_seen:
                        for part in splitter.push(str(text), 1):
                            yield part
                    else:
                        yield Chunk(text=str(text), tokens=1)
                if choice.get("finish_reason"):
                    finish_reason = str(choice["finish_reason"])
        if splitter is not None:
            for part in splitter.flush():
                yield part
        if finish_reason is None:
            raise RuntimeProtocolError(f"{self.service} at {self.base_url}{path} ended the stream before the "
                                       "answer was complete (no finish_reason)")
        input_tokens = output_tokens = None
        if usage is not None:
            input_tokens = _int(usage.get("prompt_tokens"))
            output_tokens = _int(usage.get("completion_tokens"))
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict) and isinstance(details.get("cached_tokens"), (int, float)):
                server["openai_cached_prompt_tokens"] = float(details["cached_tokens"])
        if output_tokens is None:
            server["openai_tokens_counted_from_chunks"] = float(counted)
            output_tokens = counted
        yield Chunk(done=True, finish_reason=finish_reason,
                    usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens, server=server))

    async def run_embed(self, request: EmbedRequest, message: Message) -> Embeddings:
        answer = await self.request_json("POST", "/embeddings", {"model": self.model, "input": request.inputs,
                                                                 "encoding_format": "float"})
        try:
            rows = sorted(answer["data"], key=lambda row: row.get("index", 0))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise RuntimeProtocolError(f"{self.base_url}/embeddings answered without an OpenAI embedding list: "
                                       f"{str(answer)[:200]}") from None
        if len(vectors) != len(request.inputs):
            raise RuntimeProtocolError(f"{self.base_url}/embeddings gave {len(vectors)} vectors for "
                                       f"{len(request.inputs)} inputs")
        unit = all(abs(math.fsum(x * x for x in vector) - 1.0) < 1e-3 for vector in vectors)
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
        metrics = RequestMetrics(operation="embed", input_tokens=_int(usage.get("prompt_tokens")))
        return Embeddings(vectors=vectors, model=self.model, normalized=unit, method="openai /v1/embeddings",
                          metrics=metrics)

    # ----- stats and memory ----------------------------------------------------------------------------------
    async def server_version(self) -> str | None:
        """The server's build, where it says: llama.cpp's `/props` `build_info`, vLLM's `/version`."""
        root = server_root(self.base_url)
        for path, field in (("/props", "build_info"), ("/version", "version")):
            try:
                response = await self.client.get(f"{root}{path}", timeout=2.0)
                value = response.json().get(field) if response.status_code == 200 else None
            except (httpx.HTTPError, ValueError, AttributeError):
                continue
            if value:
                return f"llama.cpp {value}" if field == "build_info" else f"vLLM {value}"
        return None

    def memory_target(self) -> ProcessTarget | None:
        return self.server_process.target()

    async def runtime_stats(self) -> dict[str, Any]:
        details: dict[str, Any] = {"url": self.base_url, "api_key_from": self._key_source()}
        fields: dict[str, Any] = {"details": details, "device": "openai-compatible server"}
        meta = self.model_entry.get("meta") if isinstance(self.model_entry.get("meta"), dict) else {}
        if isinstance(meta.get("size"), (int, float)):
            details["server_reported_model_bytes"] = int(meta["size"])  # llama.cpp: the model file's size
        if isinstance(meta.get("n_params"), int):
            fields["parameters"] = meta["n_params"]
        if isinstance(meta.get("n_ctx_train"), int):
            details["context_length"] = meta["n_ctx_train"]
        if isinstance(self.model_entry.get("max_model_len"), int):  # vLLM
            details["context_length"] = self.model_entry["max_model_len"]
        if self.model_entry.get("owned_by"):
            details["owned_by"] = self.model_entry["owned_by"]
        rss = self.server_process.tree_rss()
        if rss is not None:
            details["server_tree_rss_bytes"] = rss
            fields["memory_bytes"] = rss
        return fields

    def _key_source(self) -> str:
        """Which variable the key came from (its name only, never its value)."""
        if os.environ.get(key_variable(self.base_url)):
            return key_variable(self.base_url)
        return "OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") else "none"


# ----- helpers ---------------------------------------------------------------------------------------------------
async def _loading(client: httpx.AsyncClient, base_url: str) -> str | None:
    """llama.cpp's "Loading model" (503 on /health) as text; None when the server is not loading."""
    response = await client.get(f"{server_root(base_url)}/health")
    if response.status_code != 503:
        return None
    message = openai_message(_json_or_text(response)) or ""
    return f"HTTP 503 {message}".strip() if "load" in message.lower() else None


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text.strip()


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _wire_message(message: ChatMessage) -> dict[str, Any]:
    item: dict[str, Any] = message.model_dump(exclude={"thinking"}, exclude_none=True)
    if message.thinking and message.role == "assistant":
        item["reasoning_content"] = message.thinking
    return item


def _sampling(options: GenerationOptions) -> dict[str, Any]:
    fields = {"max_tokens": options.max_tokens, "temperature": options.temperature, "top_p": options.top_p,
              "top_k": options.top_k, "seed": options.seed, "stop": options.stop or None}
    body = {key: value for key, value in fields.items() if value is not None}
    body.update(options.extra)  # server-specific fields (min_p, repeat_penalty...) go at the top level
    return body


def _thinking(options: GenerationOptions, base_url: str) -> dict[str, Any]:
    """How to ask for thinking: a level is `reasoning_effort`; on/off is the chat template's
    `enable_thinking` (llama.cpp, vLLM, SGLang), except at OpenAI itself, which refuses unknown fields
    and takes only `reasoning_effort`."""
    if options.think is None:
        return {}
    if isinstance(options.think, str):
        return {"reasoning_effort": options.think}
    if urlsplit(base_url).hostname == "api.openai.com":
        return {"reasoning_effort": "medium"} if options.think else {}
    return {"chat_template_kwargs": {"enable_thinking": bool(options.think)}}


_TIMINGS = ("cache_n", "prompt_n", "prompt_ms", "prompt_per_token_ms", "prompt_per_second",
            "predicted_n", "predicted_ms", "predicted_per_token_ms", "predicted_per_second")


def _server_figures(item: dict[str, Any]) -> dict[str, float]:
    """What a server says about its own work on this request, labelled by who said it."""
    figures: dict[str, float] = {}
    timings = item.get("timings")
    if isinstance(timings, dict):  # llama.cpp
        for key in _TIMINGS:
            value = timings.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                figures[f"llamacpp_{key}"] = float(value)
    served = item.get("workbench_metrics")
    if isinstance(served, dict):  # workbench serve's own measurements
        for key, value in served.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                figures[f"served_{key}"] = float(value)
    metrics = item.get("metrics")
    if isinstance(metrics, dict):  # vLLM's per-request metrics: time_to_first_token_ms, queue_time_ms...
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                figures[f"vllm_{key}"] = float(value)
    return figures
