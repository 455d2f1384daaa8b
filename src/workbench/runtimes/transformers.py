"""`TransformersRuntimeActor`: Hugging Face transformers models, in process (spec `transformers:MODEL`).

MODEL is anything the catalog resolves: `smollm2`, `minilm`, a local `.gguf` file or a local model
folder. Loading goes through `workbench.models.loading` (converted-GGUF cache, memory check).

Decoding is our own loop over `model(...)` with the KV cache (`past_key_values`), run by the
actor's `TransformersWorker` (on a thread, in a process of its own or in a Ray actor, see
`runtimes/placement/`): it yields each token as it is made, checks the cancel flag
between tokens (a cancelled stream stops within one token), and keeps the throughput of
`model.generate` (benchmarks/inprocess.py measures both side by side). Temperature 0 or unset means
greedy decoding, which is reproducible; otherwise temperature, top-k and top-p sampling with a
`torch.Generator` seeded from `seed` (same seed, same answer).

Thinking (`think`): a model whose chat template knows `enable_thinking` (Qwen3 style) gets it
switched on and its `<think>...</think>` block is routed to `Chunk.thinking`. A model without one
(SmolLM2) follows our prompt convention: `streamtext.THINK_INSTRUCTION` is added to the system prompt and the
assistant turn is opened with `<think>`, so everything up to the model's `</think>` is thinking and
the rest is the answer. A small model often ends its turn without closing the block; then we
close it for the model (`</think>` appended to its own text) and let it write the answer with the
tokens left, so `think` still gives an answer.

Embeddings: an encoder folder (`minilm`) gives sentence-transformers style vectors (mean pooling
over the attention mask, L2-normalised). A causal LM gives mean-pooled last hidden states,
normalised, and says so in `Embeddings.method` and the capabilities' notes.

Images: a vision-language model folder (its config has `vision_config`, loaded with
`AutoModelForImageTextToText` and `AutoProcessor`) can `summarize_image` and take image parts in
chat; a text-only model raises `NotSupported`.

Sharing one loaded model: pass `preloaded=` (a `workbench.models.loading.LoadedModel`) and the
actor uses it instead of loading (thread placement only: a model object cannot cross processes);
`unload` then only drops this actor's reference. Tests use this to keep one copy of the weights
for several actors.

Threads: `threads=` (default: the machine's cores) is applied with `torch.set_num_threads` when
the model loads and before every request. torch's setting is process-wide: with `process`
placement every worker has its own; with `thread` placement actors take turns with it.
"""

from __future__ import annotations

import gc
import io
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import torch

from workbench.actors.actor import Message
from workbench.errors import NotSupported, PromptTooLong
from workbench.models.catalog import ModelEntry, resolve_model
from workbench.models.loading import LoadedModel, ProgressCallback, is_vision_folder, load_model
from workbench.runtimes.base import Availability, ChatRequest, EmbedRequest, GenerateRequest
from workbench.runtimes.inprocess import InProcessModelRuntimeActor
from workbench.runtimes.placement import ModelWorker, Placement, WorkerSpec
from workbench.runtimes.placement.thread import ThreadPlacement
from workbench.runtimes.streamtext import (
    THINK_CLOSE,
    THINK_OPEN,
    ThinkSplitter,
    route_text,
    with_think_instruction,
)
from workbench.runtimes.types import (
    Capabilities,
    ChatMessage,
    Chunk,
    Embeddings,
    GenerationOptions,
    ImagePart,
    ImageURL,
    TextPart,
    Usage,
)
from workbench.textgen.detokenize import IncrementalDetokenizer
from workbench.textgen.sampler import Sampler
from workbench.textgen.stops import StopMatcher

DEFAULT_MAX_TOKENS = 512
_FALLBACK_TEMPLATE_ROLES = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}


def capabilities_for(entry: ModelEntry, vision: bool) -> Capabilities:
    """What this runtime can do with this model (known before loading, from the catalog entry)."""
    if entry.kind == "embedding":
        note = f"{entry.name} is an embedding model"
        return Capabilities(
            generate=False, chat=False, complete=False, think=False, summarize_text=False,
            summarize_image=False, embed=True, streaming=False,
            notes={op: note for op in ("generate", "chat", "complete", "think", "summarize_text", "summarize_image")}
            | {"embed": "mean pooling over the attention mask, L2-normalised (sentence-transformers style)"},
        )
    notes = {
        "think": "the model's own thinking template when it has one; otherwise a system instruction to "
                 "reason inside <think>...</think> with the block opened in the reply",
        "embed": "mean-pooled last hidden states of a causal LM, L2-normalised (not a trained embedding model)",
    }
    if not vision:
        notes["summarize_image"] = f"{entry.name} is a text-only model"
    return Capabilities(think=True, embed=True, summarize_image=vision, notes=notes)


class TransformersRuntimeActor(InProcessModelRuntimeActor):
    """Actor side: capabilities and request checks; the model lives in a `TransformersWorker`."""

    runtime: ClassVar[str] = "transformers"
    description: ClassVar[str] = "Hugging Face transformers, in process"
    worker_factory: ClassVar[str] = "workbench.runtimes.transformers:TransformersWorker"

    def __init__(
        self,
        model: str,
        *,
        preloaded: LoadedModel | None = None,
        available_memory: int | None = None,
        **kwargs: Any,
    ) -> None:
        """`preloaded` shares an already loaded model (thread placement); `available_memory`
        overrides psutil's figure for the memory check (tests)."""
        self.entry = preloaded.entry if preloaded is not None else resolve_model(model)
        super().__init__(model, **kwargs)
        if preloaded is not None and self.placement_name != "thread":
            raise ValueError("a preloaded model can only be shared with placement='thread'")
        self._preloaded = preloaded
        self._available_memory = available_memory
        self.vision = preloaded.kind == "vision-lm" if preloaded else (
            self.entry.gguf_file is None and is_vision_folder(self.entry.path))
        self.capabilities = capabilities_for(self.entry, self.vision)

    @classmethod
    async def availability(cls, host: str | None = None) -> Availability:
        import importlib.util

        missing = [name for name in ("transformers", "torch", "gguf") if importlib.util.find_spec(name) is None]
        if missing:
            return Availability(False, f"missing packages: {', '.join(missing)}")
        return Availability(True)

    def worker_options(self) -> dict[str, Any]:
        return super().worker_options() | {"available_memory": self._available_memory}

    def create_worker_placement(self) -> Placement:
        if self._preloaded is None:
            return super().create_worker_placement()
        worker = TransformersWorker(self.worker_spec(), preloaded=self._preloaded)
        return ThreadPlacement(self.worker_spec(), worker=worker)

    async def on_stop(self) -> None:
        await super().on_stop()
        self._preloaded = None  # unload dropped the worker's reference; drop ours too

    @property
    def loaded(self) -> LoadedModel | None:
        """The loaded model when the worker runs on a thread here (None otherwise)."""
        worker = self.hosted_worker()
        return worker.loaded if isinstance(worker, TransformersWorker) else None

    # ----- stream hooks --------------------------------------------------------------------------------
    async def stream_generate(self, request: GenerateRequest, message: Message) -> AsyncIterator[Chunk]:
        if request.images and not self.vision:
            raise NotSupported(f"{self.runtime} ({self.model})", "images", f"{self.entry.name} is a text-only model")
        async for chunk in self.stream_worker("generate", request, message):
            yield chunk

    async def stream_chat(self, request: ChatRequest, message: Message) -> AsyncIterator[Chunk]:
        if any(item.image_urls() for item in request.messages) and not self.vision:
            raise NotSupported(f"{self.runtime} ({self.model})", "images", f"{self.entry.name} is a text-only model")
        if request.options.think and not self.capabilities.think:
            request = request.model_copy(update={"options": request.options.model_copy(update={"think": None})})
        async for chunk in self.stream_worker("chat", request, message):
            yield chunk

    async def run_embed(self, request: EmbedRequest, message: Message) -> Embeddings:
        return await self.embed_worker(request)


class TransformersWorker(ModelWorker):
    """Worker side: loads the model and decodes, wherever the placement runs it (blocking code)."""

    def __init__(self, spec: WorkerSpec, *, preloaded: LoadedModel | None = None) -> None:
        super().__init__(spec)
        self.entry = preloaded.entry if preloaded is not None else resolve_model(spec.model)
        self.threads_in_use: int | None = None
        self._preloaded = preloaded
        self._available_memory: int | None = spec.options.get("available_memory")
        self.loaded: LoadedModel | None = None

    def _apply_threads(self) -> None:
        """torch's thread count is process-wide: set ours before each piece of work and remember what
        it ran with (another actor on a thread of the same process may set its own in between)."""
        torch.set_num_threads(self.threads)
        self.threads_in_use = torch.get_num_threads()

    def import_libraries(self) -> None:
        import transformers  # noqa: F401 - before the baseline (torch is imported with this module)

    def load(self, progress: ProgressCallback) -> None:
        self._apply_threads()
        if self._preloaded is not None:
            self.loaded = self._preloaded
            progress(1.0, "using a preloaded model")
            return
        self.loaded = load_model(self.entry, progress, available_memory=self._available_memory)

    def unload(self) -> None:
        self.loaded = None
        self._preloaded = None
        gc.collect()

    def _require(self) -> LoadedModel:
        if self.loaded is None:
            raise RuntimeError(f"{self.spec.name} has no model loaded")
        return self.loaded

    def stream(self, operation: str, request: dict[str, Any], cancel: threading.Event) -> Iterator[Chunk]:
        loaded = self._require()
        if operation == "generate":
            generate = GenerateRequest.model_validate(request)
            if generate.raw:
                ids = loaded.tokenizer(generate.prompt, return_tensors="pt")["input_ids"]
                return self._produce(loaded, {"input_ids": ids}, generate.options, cancel, None)
            messages: list[ChatMessage] = []
            if generate.system:
                messages.append(ChatMessage(role="system", content=generate.system))
            parts: list[TextPart | ImagePart] = [ImagePart(image_url=ImageURL(url=url)) for url in generate.images]
            content = [*parts, TextPart(text=generate.prompt)] if parts else generate.prompt
            messages.append(ChatMessage(role="user", content=content))
            chat = ChatRequest(messages=messages, options=generate.options)
        elif operation == "chat":
            chat = ChatRequest.model_validate(request)
        else:
            raise NotSupported(self.spec.name, operation)
        if any(item.image_urls() for item in chat.messages) and loaded.kind != "vision-lm":
            raise NotSupported(self.spec.name, "images", f"{self.entry.name} is a text-only model")
        think = bool(chat.options.think)
        inputs, opened = self._chat_inputs(loaded, chat.messages, think)
        return self._produce(loaded, inputs, chat.options, cancel, opened if think else None)

    def embed(self, request: dict[str, Any]) -> Embeddings:
        return self._embed(EmbedRequest.model_validate(request).inputs)

    def stats(self) -> dict[str, Any]:
        loaded = self.loaded
        if loaded is None:
            return {"details": {"path": str(self.entry.file), "kind": self.entry.kind, "loaded": False}}
        parameters = loaded.parameters
        first = next(loaded.model.parameters())
        weights = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
        return {
            "parameters": parameters,
            "dtype": str(first.dtype).removeprefix("torch."),
            "device": str(first.device),
            "memory_bytes": weights,
            "load_time_s": loaded.load_time_s,
            "details": {
                "path": str(self.entry.file),
                "kind": loaded.kind,
                "source": loaded.source,
                "torch_threads": self.threads_in_use,
                "estimated_bytes": loaded.estimate.bytes_needed if loaded.estimate else None,
                "shared": self._preloaded is not None,
            },
        }

    # ----- prompts -------------------------------------------------------------------------------------
    def _chat_inputs(
        self, loaded: LoadedModel, messages: list[ChatMessage], thinking: bool
    ) -> tuple[dict[str, torch.Tensor], bool]:
        """Model inputs for a conversation, and whether the prompt itself opened a thinking block."""
        template = getattr(loaded.tokenizer, "chat_template", None) or ""
        native_thinking = "enable_thinking" in template
        if thinking and not native_thinking:
            messages = with_think_instruction(messages)
        turns = [(item.role, item.text, len(item.image_urls())) for item in messages]
        dicts = [{"role": role, "content": text} for role, text, _ in turns]
        extra = {"enable_thinking": thinking} if native_thinking else {}
        images = [image for item in messages for image in item.images()]
        if loaded.processor is not None:
            processor_messages = [
                {"role": role, "content": [{"type": "image"}] * count + [{"type": "text", "text": text}]}
                for role, text, count in turns
            ]
            prompt = loaded.processor.apply_chat_template(processor_messages, add_generation_prompt=True, **extra)
        elif template:
            prompt = loaded.tokenizer.apply_chat_template(dicts, add_generation_prompt=True, tokenize=False, **extra)
        else:
            prompt = "".join(f"{_FALLBACK_TEMPLATE_ROLES[d['role']]}: {d['content']}\n" for d in dicts) + "Assistant:"
        opened = False
        if thinking:
            opened = prompt.rstrip().endswith(THINK_OPEN)
            if not native_thinking:
                prompt, opened = prompt + THINK_OPEN + "\n", True
        if loaded.processor is not None and images:
            from PIL import Image

            pictures = []
            for number, data in enumerate(images, start=1):
                try:
                    pictures.append(Image.open(io.BytesIO(data)).convert("RGB"))
                except (OSError, ValueError) as error:
                    raise ValueError(f"image {number} cannot be decoded ({len(data)} bytes): {error}") from None
            encoded = loaded.processor(images=pictures, text=prompt, return_tensors="pt")
            return dict(encoded), opened
        encoded = loaded.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        return {"input_ids": encoded["input_ids"]}, opened

    # ----- decoding ------------------------------------------------------------------------------------
    def _produce(
        self,
        loaded: LoadedModel,
        inputs: dict[str, torch.Tensor],
        options: GenerationOptions,
        cancel: threading.Event,
        thinking: bool | None,
    ) -> Iterator[Chunk]:
        self._apply_threads()
        tokenizer = loaded.tokenizer
        stopper = StopMatcher(options.stop)
        splitter = ThinkSplitter(thinking=thinking) if thinking is not None else None
        input_tokens = int(inputs["input_ids"].shape[1])
        limit = self._max_new_tokens(loaded, inputs, options)
        produced, finish, closed = 0, "stop", False
        while True:
            decoder = IncrementalDetokenizer(tokenizer, skip_special_tokens=True)
            budget = options.model_copy(update={"max_tokens": limit - produced})
            for token_id, finish_reason in self._tokens(loaded, inputs, budget, cancel):
                if finish_reason is not None:
                    finish = finish_reason
                    break
                produced += 1
                yield from route_text(stopper.push(decoder.push(token_id)), 1, splitter)
                if stopper.stopped:
                    break
            yield from route_text(stopper.push(decoder.flush()) + stopper.flush(), None, splitter)
            ended_in_thought = (splitter is not None and splitter.state == "thinking" and finish == "stop"
                                and not stopper.stopped and not cancel.is_set() and set(inputs) == {"input_ids"})
            if closed or not ended_in_thought or produced >= limit:
                break
            # The model ended inside its thinking block (small models often do): close the block
            # for it, as a reasoning model would, and let it write the answer with the budget left.
            assert splitter is not None
            yield from splitter.push(THINK_CLOSE)
            closing = tokenizer(f"\n{THINK_CLOSE}\n\n", add_special_tokens=False)["input_ids"]
            continued = torch.tensor([decoder.ids + list(closing)], dtype=inputs["input_ids"].dtype)
            inputs = {"input_ids": torch.cat([inputs["input_ids"], continued], dim=1)}
            closed = True
        if splitter is not None:
            yield from splitter.flush()
        if cancel.is_set():
            finish = "cancelled"
        yield Chunk(done=True, finish_reason=finish, usage=Usage(input_tokens=input_tokens, output_tokens=produced))

    def _tokens(
        self,
        loaded: LoadedModel,
        inputs: dict[str, torch.Tensor],
        options: GenerationOptions,
        cancel: threading.Event,
    ) -> Iterator[tuple[int, str | None]]:
        """Yield (token id, None) per new token, then (−1, reason) when it ends for any other cause
        than the caller stopping: "stop" (end of sequence) or "length"."""
        model = loaded.model
        limit = self._max_new_tokens(loaded, inputs, options)
        eos = self._eos_ids(loaded)
        sampler = Sampler(temperature=options.temperature, top_k=options.top_k, top_p=options.top_p, seed=options.seed)
        with torch.inference_mode():
            from transformers import DynamicCache

            cache = DynamicCache(config=model.config.get_text_config())
            outputs = model(**inputs, past_key_values=cache, use_cache=True)
            for step in range(limit):
                token_id = sampler(outputs.logits[:, -1, :])
                if token_id in eos:
                    yield -1, "stop"
                    return
                yield token_id, None
                if cancel.is_set():
                    return
                if step + 1 < limit:  # no forward pass for a token nobody will take
                    outputs = model(input_ids=torch.tensor([[token_id]]), past_key_values=outputs.past_key_values, use_cache=True)
        yield -1, "length"

    @staticmethod
    def _max_new_tokens(loaded: LoadedModel, inputs: dict[str, torch.Tensor], options: GenerationOptions) -> int:
        config = loaded.model.config.get_text_config()
        context = getattr(config, "max_position_embeddings", None) or 2048
        room = context - int(inputs["input_ids"].shape[1])
        if room <= 0:
            raise PromptTooLong(f"the prompt is {inputs['input_ids'].shape[1]} tokens; the model's context is {context}")
        return max(1, min(options.max_tokens or DEFAULT_MAX_TOKENS, room))

    @staticmethod
    def _eos_ids(loaded: LoadedModel) -> set[int]:
        found: set[int] = set()
        for value in (loaded.model.generation_config.eos_token_id, loaded.tokenizer.eos_token_id):
            if isinstance(value, int):
                found.add(value)
            elif isinstance(value, (list, tuple)):
                found.update(int(item) for item in value)
        return found

    # ----- embeddings ----------------------------------------------------------------------------------
    def _embed(self, texts: list[str]) -> Embeddings:
        self._apply_threads()
        loaded = self._require()
        tokenizer = loaded.tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        limit = min(int(getattr(tokenizer, "model_max_length", 512) or 512), 512)
        batch = tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        mask = batch["attention_mask"]
        with torch.inference_mode():
            if loaded.kind == "encoder":
                hidden = loaded.model(**batch).last_hidden_state
                method = "mean-pooled encoder output"
            else:
                hidden = loaded.model.base_model(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
                method = "mean-pooled hidden states (causal LM)"
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            vectors = torch.nn.functional.normalize(pooled, p=2, dim=1)
        from workbench.metrics.request import RequestMetrics

        metrics = RequestMetrics(correlation_id="", operation="embed", input_tokens=int(mask.sum()))
        return Embeddings(vectors=vectors.tolist(), model=self.entry.name, normalized=True, method=method, metrics=metrics)
