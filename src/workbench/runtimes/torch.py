"""`TorchRuntimeActor`: our own PyTorch llama engine, in process (spec `torch:MODEL`).

MODEL is anything the catalog resolves to a llama-architecture GGUF (`smollm2`, or a local
`.gguf` file). Unlike `TransformersRuntimeActor`, no transformers code runs in the forward pass or
the sampling loop: `workbench.engine` reads the GGUF and decodes with its own kernels (weights mode
`q4q16` by default: the file's Q4_1 blocks, fp32 prefill, decode with 16-bit activations, greedy
output token-for-token equal to transformers' fp32 on the parity prompts; `q4` for fp32 math
throughout). The tokenizer and chat template are built from the GGUF's own metadata
(`tokenizers` and a sandboxed jinja2 template): `torch:` runs without transformers installed.

Streaming: the engine yields token ids in the worker (`TorchWorker`, on a thread, in a process of
its own or in a Ray actor, see `runtimes/placement/`); text is detokenised
incrementally (multi-byte characters kept whole) and stop strings are matched on the text with
the shared `StopMatcher`, so every runtime trims them the same way. A cancelled stream stops within
one token. Thinking follows the transformers runtime's prompt convention for models without a
native thinking template (a system instruction and an opened `<think>` block).

Options: `threads=` as for every runtime; `weights=` picks the engine's weights mode
(`q4q16`, `q4`, `fp32`, `bf16`, `int4pack`, `int8`, `q4q8`: `workbench.engine.WEIGHT_MODES`); a request's `extra={"weights": ...}` is ignored (the
mode is fixed at load time).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

from workbench.actors.actor import Message
from workbench.errors import NotSupported, PromptTooLong
from workbench.metrics.request import TORCH_CACHED_PROMPT_TOKENS
from workbench.models.catalog import resolve_model
from workbench.runtimes.base import Availability, ChatRequest, EmbedRequest, GenerateRequest
from workbench.runtimes.inprocess import InProcessModelRuntimeActor
from workbench.runtimes.placement import ModelWorker, ProgressCallback, WorkerSpec
from workbench.runtimes.streamtext import (
    THINK_CLOSE,
    THINK_OPEN,
    ThinkSplitter,
    route_text,
    with_think_instruction,
)
from workbench.runtimes.types import Capabilities, ChatMessage, Chunk, Embeddings, GenerationOptions, Usage
from workbench.textgen.stops import StopMatcher

DEFAULT_MAX_TOKENS = 512


class TorchRuntimeActor(InProcessModelRuntimeActor):
    """Actor side: capabilities and request checks; the model lives in a `TorchWorker`."""

    runtime: ClassVar[str] = "torch"
    description: ClassVar[str] = "our own PyTorch llama engine (GGUF, no transformers at inference)"
    worker_factory: ClassVar[str] = "workbench.runtimes.torch:TorchWorker"

    def __init__(self, model: str, *, weights: str | None = None, **kwargs: Any) -> None:
        """`weights`: the engine's weights mode (default: `workbench.engine.DEFAULT_WEIGHTS`)."""
        self.entry = resolve_model(model)
        super().__init__(model, **kwargs)
        if self.entry.gguf_file is None:
            raise NotSupported(f"torch ({model})", "load", "the torch engine reads llama GGUF files only")
        self.weights = weights
        self.capabilities = Capabilities(
            think=True,
            embed=True,
            summarize_image=False,
            notes={
                "think": "a system instruction to reason inside <think>...</think>, block opened in the reply",
                "embed": "mean-pooled final hidden states of the causal LM, L2-normalised",
                "summarize_image": "the torch engine runs text-only llama models",
            },
        )

    @classmethod
    async def availability(cls, host: str | None = None) -> Availability:
        import importlib.util

        missing = [name for name in ("torch", "gguf", "tokenizers", "jinja2") if importlib.util.find_spec(name) is None]
        if missing:
            return Availability(False, f"missing packages: {', '.join(missing)}")
        return Availability(True)

    def worker_options(self) -> dict[str, Any]:
        return super().worker_options() | {"weights": self.weights}

    @property
    def engine(self) -> Any:
        """The loaded engine when the worker runs on a thread here (None otherwise)."""
        worker = self.hosted_worker()
        return worker.engine if isinstance(worker, TorchWorker) else None

    # ----- stream hooks ----------------------------------------------------------------------------------
    async def stream_generate(self, request: GenerateRequest, message: Message) -> AsyncIterator[Chunk]:
        if request.images:
            raise NotSupported(f"torch ({self.model})", "images", "the torch engine is text-only")
        async for chunk in self.stream_worker("generate", request, message):
            yield chunk

    async def stream_chat(self, request: ChatRequest, message: Message) -> AsyncIterator[Chunk]:
        if any(item.image_urls() for item in request.messages):
            raise NotSupported(f"torch ({self.model})", "images", "the torch engine is text-only")
        async for chunk in self.stream_worker("chat", request, message):
            yield chunk

    async def run_embed(self, request: EmbedRequest, message: Message) -> Embeddings:
        return await self.embed_worker(request)


class TorchWorker(ModelWorker):
    """Worker side: loads the engine and decodes, wherever the placement runs it (blocking code)."""

    def __init__(self, spec: WorkerSpec) -> None:
        super().__init__(spec)
        self.entry = resolve_model(spec.model)
        self.weights: str | None = spec.options.get("weights")
        self.engine: Any = None
        self.load_time_s: float | None = None
        self.first_token: dict[str, float] = {}  # the last request's time-to-first-token breakdown
        self._prompt_timing: dict[str, float] | None = None

    def import_libraries(self) -> None:
        import workbench.engine  # noqa: F401 - torch and the engine's kernels, before the baseline

    def load(self, progress: ProgressCallback) -> None:
        from workbench.engine import DEFAULT_WEIGHTS, LlamaEngine

        started = time.perf_counter()
        self.engine = LlamaEngine.load(
            self.entry.file, threads=self.threads, weights=(self.weights or DEFAULT_WEIGHTS), progress=progress
        )
        self.load_time_s = time.perf_counter() - started

    def unload(self) -> None:
        self.engine = None
        gc.collect()

    def _require(self) -> Any:
        if self.engine is None:
            raise RuntimeError(f"{self.spec.name} has no model loaded")
        return self.engine

    def stream(self, operation: str, request: dict[str, Any], cancel: threading.Event) -> Iterator[Chunk]:
        engine = self._require()
        if operation == "generate":
            generate = GenerateRequest.model_validate(request)
            if generate.raw:
                return self._produce(engine.tokenizer.encode(generate.prompt), generate.options, cancel, None)
            messages: list[ChatMessage] = []
            if generate.system:
                messages.append(ChatMessage(role="system", content=generate.system))
            messages.append(ChatMessage(role="user", content=generate.prompt))
            chat = ChatRequest(messages=messages, options=generate.options)
        elif operation == "chat":
            chat = ChatRequest.model_validate(request)
        else:
            raise NotSupported(self.spec.name, operation)
        think = bool(chat.options.think)
        ids, opened = self._chat_ids(chat.messages, think)
        return self._produce(ids, chat.options, cancel, opened if think else None)

    def embed(self, request: dict[str, Any]) -> Embeddings:
        return self._embed(EmbedRequest.model_validate(request).inputs)

    def stats(self) -> dict[str, Any]:
        engine = self.engine
        if engine is None:
            return {"details": {"path": str(self.entry.file), "loaded": False}}
        return {
            "parameters": engine.num_parameters,
            "dtype": engine.weights,
            "device": "cpu",
            "memory_bytes": engine.memory_bytes(),
            "load_time_s": self.load_time_s,
            "details": {"path": str(engine.path), "weights": engine.weights, "weights_requested": engine.requested_weights,
                        "weights_note": engine.weights_note, "torch_threads": engine.threads,
                        "prompt_cache_bytes": engine.prompt_cache.nbytes,
                        "first_token": dict(self.first_token)},
        }

    # ----- prompts and decoding ---------------------------------------------------------------------------
    def _chat_ids(self, messages: list[ChatMessage], thinking: bool) -> tuple[list[int], bool]:
        engine = self._require()
        self._prompt_timing = timing = {"started_at": time.perf_counter()}
        if thinking:
            messages = with_think_instruction(messages)
        dicts = [{"role": item.role, "content": item.text} for item in messages]
        text = engine.tokenizer.render_chat(dicts) + (THINK_OPEN + "\n" if thinking else "")
        rendered = time.perf_counter()
        ids = engine.tokenizer.encode(text)
        timing |= {"template_s": rendered - timing["started_at"], "tokenize_s": time.perf_counter() - rendered}
        return ids, thinking

    def _produce(
        self, ids: list[int], options: GenerationOptions, cancel: threading.Event, thinking: bool | None
    ) -> Iterator[Chunk]:
        from workbench.engine import SamplingParams

        engine = self._require()
        # timings of this request (with the template's and tokenizer's when `_chat_ids` made the prompt)
        self.first_token = self._prompt_timing or {"started_at": time.perf_counter()}
        self._prompt_timing = None
        self.first_token["prompt_tokens"] = len(ids)
        room = engine.config.context_length - len(ids)
        if room <= 0:
            raise PromptTooLong(f"the prompt is {len(ids)} tokens; the model's context is {engine.config.context_length}")
        limit = max(1, min(options.max_tokens or DEFAULT_MAX_TOKENS, room))
        greedy = options.temperature is None or options.temperature == 0.0
        stopper = StopMatcher(options.stop)
        splitter = ThinkSplitter(thinking=thinking) if thinking is not None else None
        prompt_tokens = len(ids)
        produced, closed = 0, False
        while True:
            params = SamplingParams(
                max_new_tokens=limit - produced,
                temperature=0.0 if greedy else float(options.temperature or 0.0),
                top_p=options.top_p if options.top_p is not None else 1.0,
                top_k=options.top_k or 0,
                seed=options.seed,
            )
            decoder = engine.tokenizer.stream_decoder()
            generated: list[int] = []
            timings = self.first_token if produced == 0 else None
            for token_id in engine.generate(ids, params, cancel, timings):
                produced += 1
                generated.append(token_id)
                if produced == 1:
                    self.first_token["first_token_at"] = time.perf_counter()
                chunks = route_text(stopper.push(decoder.push(token_id)), 1, splitter)
                if produced == 1:
                    self.first_token["first_detokenize_s"] = time.perf_counter() - self.first_token["first_token_at"]
                yield from chunks
                if stopper.stopped:
                    break
            yield from route_text(stopper.push(decoder.flush()) + stopper.flush(), None, splitter)
            ended_in_thought = (splitter is not None and splitter.state == "thinking" and produced < limit
                                and not stopper.stopped and not cancel.is_set())
            if closed or not ended_in_thought:
                break
            # Same convention as the transformers runtime: the model ended inside its thinking block,
            # so close it for the model and let it answer with the budget left.
            assert splitter is not None
            yield from splitter.push(THINK_CLOSE)
            ids = ids + generated + engine.tokenizer.encode(f"\n{THINK_CLOSE}\n\n")
            closed = True
        if splitter is not None:
            yield from splitter.flush()
        finish = "cancelled" if cancel.is_set() else ("length" if produced >= limit and not stopper.stopped else "stop")
        # how much of the prompt came from the prompt cache: a repeated prompt's TTFT is not a prefill's
        cached = {TORCH_CACHED_PROMPT_TOKENS: float(self.first_token.get("reused_tokens", 0))}
        yield Chunk(done=True, finish_reason=finish,
                    usage=Usage(input_tokens=prompt_tokens, output_tokens=produced, server=cached))

    def _embed(self, texts: list[str]) -> Embeddings:
        engine = self._require()
        vectors = [engine.embed(text) for text in texts]
        from workbench.metrics.request import RequestMetrics

        count = sum(len(engine.tokenizer.encode(text)) for text in texts)
        metrics = RequestMetrics(correlation_id="", operation="embed", input_tokens=count)
        return Embeddings(
            vectors=vectors,
            model=self.entry.name,
            normalized=True,
            method="mean-pooled final hidden states (causal LM, torch engine)",
            metrics=metrics,
        )

