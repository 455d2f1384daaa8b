"""`ModelRuntimeActor`: one interface for every runtime, whatever runs the model.

Callers use the public operations (`chat`, `generate`, ...). Each returns a `TextReply` at once:
`async for chunk in actor.chat(...)` streams; `await actor.chat(...)` gives the complete
`Completion`. Runtimes implement only the `stream_*` / `run_embed` hooks; the base class queues them
in the actor's mailbox, measures them (see `workbench.metrics.request`) and checks capabilities.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from workbench.actors.actor import Actor, Message, Reply
from workbench.actors.kinds import READ_OPERATIONS
from workbench.actors.limit import ConcurrencyLimit
from workbench.errors import InvalidImage, NotSupported
from workbench.files import NO_SUCH_FILE, read_bounded
from workbench.metrics import otel
from workbench.metrics.request import MetricsRecorder, RequestMetrics
from workbench.metrics.sampler import ProcessTarget
from workbench.runtimes.types import (
    Capabilities,
    ChatMessage,
    Chunk,
    Completion,
    Embeddings,
    GenerationOptions,
    ImagePart,
    ImageURL,
    RuntimeStats,
    TextPart,
    Usage,
    as_messages,
    encode_data_url,
)

TEXT_OPERATIONS = ("generate", "complete", "chat", "think", "summarize_text", "summarize_image")
# Seed 002's message kinds. A *query* asks the actor for an answer; a *read* gives it input without
# asking for one (context it keeps ahead of every later query, until `forget`); the *nop* tells it no
# more work is coming: that is `stop()` (drain=True runs what is queued first).
QUERY_OPERATIONS = (*TEXT_OPERATIONS, "embed")
OPERATIONS = (*QUERY_OPERATIONS, *READ_OPERATIONS, "stats")

SUMMARIZE_TEXT_INSTRUCTION = (
    "Summarize the following text in a few sentences. Keep the key facts; add nothing that is not in it."
)
SUMMARIZE_IMAGE_INSTRUCTION = "Describe this image in a few sentences: what it shows and anything notable."


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether a runtime can run here, and if not, why (shown by `workbench runtimes`)."""

    available: bool
    reason: str = ""


class GenerateRequest(BaseModel):
    """`generate` applies the model's prompt template; `complete` (raw) continues the text as is."""

    prompt: str
    system: str | None = None
    images: list[str] = Field(default_factory=list)  # data: URLs
    raw: bool = False
    options: GenerationOptions = Field(default_factory=GenerationOptions)


class ChatRequest(BaseModel):
    messages: list[ChatMessage]
    options: GenerationOptions = Field(default_factory=GenerationOptions)


class EmbedRequest(BaseModel):
    inputs: list[str]
    options: GenerationOptions = Field(default_factory=GenerationOptions)


class ReadRequest(BaseModel):
    messages: list[ChatMessage]


class ReadReceipt(BaseModel):
    """What a `read` (or `forget`) left: the messages it added, and the context the actor now keeps."""

    read: int
    context_messages: int
    context_chars: int




class TextReply(Reply[Completion]):
    """A reply to a text operation: iterate for chunks, await for the Completion."""


ImageInput = bytes | str | Path


def image_to_data_url(image: ImageInput) -> str:
    """Accept raw bytes, a data: URL, or a local file path."""
    if isinstance(image, bytes):
        return encode_data_url(image, _sniff_mime(image))
    if isinstance(image, str) and image.startswith("data:"):
        return image
    return read_image_file(Path(image))


MAX_IMAGE_BYTES = 64 * 1024 * 1024


def _image_refused(path: Path, problem: str) -> Exception:
    if problem == NO_SUCH_FILE:
        return FileNotFoundError(f"image file not found: {path}")
    return InvalidImage(f"image file {path}: {problem}")


def read_image_file(path: Path, *, verify: bool = False) -> str:
    """A local image file as a data: URL, checked where it enters (before any model loads): it must
    be a regular file of at most MAX_IMAGE_BYTES that starts as a PNG, JPEG, GIF or WebP does, and
    with `verify` one that Pillow can parse too; otherwise InvalidImage (FileNotFoundError when it is
    absent) names the file."""
    data = read_bounded(path, MAX_IMAGE_BYTES, _image_refused)
    mime = _sniff_mime(data)
    if mime == "application/octet-stream":
        raise InvalidImage(f"{path} is not an image (PNG, JPEG, GIF or WebP)")
    if not verify:
        return encode_data_url(data, mime)
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as picture:
            picture.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise InvalidImage(f"{path} is a damaged {mime.split('/')[1].upper()} image ({error})") from None
    return encode_data_url(data, mime)


def _sniff_mime(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


class ModelRuntimeActor(Actor):
    """The abstract runtime actor. Subclasses set `runtime` (the spec name) and `capabilities`."""

    runtime: ClassVar[str] = "abstract"
    family: ClassVar[str] = "abstract"
    description: ClassVar[str] = ""
    capabilities: Capabilities = Capabilities()

    def __init__(
        self,
        model: str,
        *,
        host: str | None = None,
        name: str | None = None,
        limit: ConcurrencyLimit | None = None,
        options: GenerationOptions | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__(name or f"{self.runtime}:{model}", limit=limit)
        self.model = model
        self._named = name is not None
        self.host = host
        self.default_options = options or GenerationOptions()
        self.threads = threads if threads is not None else (os.cpu_count() or 1)
        self.requests = 0
        self.last_metrics: RequestMetrics | None = None
        self.context: list[ChatMessage] = []  # what `read` gave it, ahead of every query's own input
        otel.watch(self)

    # ----- what the runtime can do here -------------------------------------------------------------
    @classmethod
    async def availability(cls, host: str | None = None) -> Availability:
        """Whether this runtime can run on this machine; subclasses check binaries, packages, servers."""
        return Availability(True)

    @property
    def spec(self) -> str:
        return f"{self.runtime}:{self.model}" + (f"@{self.host}" if self.host else "")

    @property
    def label(self) -> str:
        """The name to show and record. A name given at construction is kept; a default one follows
        the model, so an actor made as `openai:-@URL` reads `openai:MODEL` once it resolved the only
        model its server lists. `name` itself never changes after construction: the supervisor, the
        stream log, the resource sampler and telemetry key their records by it, and the events
        emitted during the load already carry it, so renaming would split or orphan them."""
        return self.name if self._named else f"{self.runtime}:{self.model}"

    @property
    def placement_label(self) -> str:
        """Where the model runs, in a word: the in-process placement (thread, process, ray...), or
        where the family puts it (a server, a subprocess)."""
        named = getattr(self, "placement_name", None)
        if named:
            return str(named)
        return {"rest": "server", "library": "server", "cli": "subprocess"}.get(self.family, self.family)

    def memory_target(self) -> ProcessTarget | None:
        """The process that holds the model, for the resource sampler (None: not known)."""
        return None

    # ----- public operations ----------------------------------------------------------------------------
    def generate(
        self,
        prompt: str,
        *,
        system: str | None = None,
        images: Sequence[ImageInput] = (),
        options: GenerationOptions | dict[str, Any] | None = None,
    ) -> TextReply:
        request = GenerateRequest(
            prompt=prompt,
            system=system,
            images=[image_to_data_url(image) for image in images],
            options=self._options(options),
        )
        return self._send_text("generate", request)

    def complete(self, prompt: str, *, options: GenerationOptions | dict[str, Any] | None = None) -> TextReply:
        return self._send_text("complete", GenerateRequest(prompt=prompt, raw=True, options=self._options(options)))

    def chat(
        self,
        messages: str | ChatMessage | dict[str, Any] | Sequence[ChatMessage | dict[str, Any]],
        *,
        options: GenerationOptions | dict[str, Any] | None = None,
    ) -> TextReply:
        return self._send_text("chat", ChatRequest(messages=as_messages(messages), options=self._options(options)))

    def think(
        self,
        messages: str | ChatMessage | dict[str, Any] | Sequence[ChatMessage | dict[str, Any]],
        *,
        options: GenerationOptions | dict[str, Any] | None = None,
    ) -> TextReply:
        """Chat with thinking on: thinking deltas stream in `Chunk.thinking`, apart from the answer."""
        chosen = self._options(options)
        if chosen.think in (None, False):
            chosen = chosen.model_copy(update={"think": True})
        return self._send_text("think", ChatRequest(messages=as_messages(messages), options=chosen))

    def summarize_text(
        self,
        text: str,
        *,
        instruction: str = SUMMARIZE_TEXT_INSTRUCTION,
        options: GenerationOptions | dict[str, Any] | None = None,
    ) -> TextReply:
        messages = [ChatMessage(role="user", content=f"{instruction}\n\n{text}")]
        return self._send_text("summarize_text", ChatRequest(messages=messages, options=self._options(options)))

    def summarize_image(
        self,
        image: ImageInput,
        *,
        instruction: str = SUMMARIZE_IMAGE_INSTRUCTION,
        options: GenerationOptions | dict[str, Any] | None = None,
    ) -> TextReply:
        self._check("summarize_image")
        parts = [TextPart(text=instruction), ImagePart(image_url=ImageURL(url=image_to_data_url(image)))]
        messages = [ChatMessage(role="user", content=parts)]
        return self._send_text("summarize_image", ChatRequest(messages=messages, options=self._options(options)))

    def embed(
        self, inputs: str | Sequence[str], *, options: GenerationOptions | dict[str, Any] | None = None
    ) -> Reply[Embeddings]:
        self._check("embed")
        batch = [inputs] if isinstance(inputs, str) else list(inputs)
        if not batch:
            raise ValueError("embed needs at least one input")
        return self.send("embed", EmbedRequest(inputs=batch, options=self._options(options)))

    def read(
        self,
        content: str | ChatMessage | dict[str, Any] | Sequence[ChatMessage | dict[str, Any]],
        *,
        role: Literal["user", "system", "assistant"] = "user",
    ) -> Reply[ReadReceipt]:
        """Give the actor input without asking for a reply (seed 002's *read*): a document, context, an
        earlier turn. It goes through the mailbox in order with the queries, holds no concurrency slot
        (no model runs), and stays ahead of every later query's input, in the order read, until
        `forget()`. A text is read as one message of `role`."""
        messages = [ChatMessage(role=role, content=content)] if isinstance(content, str) else as_messages(content)
        if not any(message.text.strip() or message.image_urls() for message in messages):
            raise ValueError("read needs something to read: the text (or image) is empty")
        return self.send("read", ReadRequest(messages=messages), limited=False)

    def forget(self) -> Reply[ReadReceipt]:
        """Drop everything read so far (after the messages already queued have run)."""
        return self.send("forget", None, limited=False)

    def handle_read(self, message: Message) -> ReadReceipt:
        request: ReadRequest = message.payload
        self.context.extend(request.messages)
        return self._receipt(len(request.messages))

    def handle_forget(self, message: Message) -> ReadReceipt:
        self.context.clear()
        return self._receipt(0)

    def _receipt(self, read: int) -> ReadReceipt:
        chars = sum(len(message.text) for message in self.context)
        return ReadReceipt(read=read, context_messages=len(self.context), context_chars=chars)

    def in_context(self, request: BaseModel) -> BaseModel:
        """The request with what the actor has read put ahead of its own input."""
        if not self.context:
            return request
        if isinstance(request, ChatRequest):
            return request.model_copy(update={"messages": [*self.context, *request.messages]})
        if isinstance(request, GenerateRequest):
            texts = [message.text for message in self.context if message.text]
            images = [url for message in self.context for url in message.image_urls()]
            return request.model_copy(update={"prompt": "\n\n".join([*texts, request.prompt]),
                                              "images": [*images, *request.images]})
        return request

    async def stats(self) -> RuntimeStats:
        """A snapshot, answered at once: it does not wait behind queued work in the mailbox."""
        return RuntimeStats(
            runtime=self.runtime,
            model=self.model,
            actor=self.name,
            state=str(self.state),
            threads=self.threads,
            queued=self.queued,
            requests=self.requests,
            errors=self.errors,
            restarts=self.restarts,
            last_request=self.last_metrics,
            **await self.runtime_stats(),
        )

    async def runtime_stats(self) -> dict[str, Any]:
        """Runtime-specific fields of RuntimeStats (parameters, dtype, memory, details...)."""
        return {}

    # ----- hooks runtimes implement ------------------------------------------------------------------
    def stream_generate(self, request: GenerateRequest, message: Message) -> AsyncIterator[Chunk]:
        raise NotSupported(self.runtime, "generate" if not request.raw else "complete")

    def stream_chat(self, request: ChatRequest, message: Message) -> AsyncIterator[Chunk]:
        raise NotSupported(self.runtime, "chat")

    async def run_embed(self, request: EmbedRequest, message: Message) -> Embeddings:
        raise NotSupported(self.runtime, "embed")

    # ----- mailbox dispatch -----------------------------------------------------------------------------
    def receive(self, message: Message) -> Any:
        operation = message.operation
        if operation in ("generate", "complete"):
            return self._measured(message, self.stream_generate(self.in_context(message.payload), message))
        if operation in ("chat", "think", "summarize_text", "summarize_image"):
            return self._measured(message, self.stream_chat(self.in_context(message.payload), message))
        if operation == "embed":
            return self._embed_measured(message)
        return super().receive(message)

    async def _measured(self, message: Message, stream: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        recorder = MetricsRecorder(message.correlation_id, message.operation, sent_at=message.sent_at)
        recorder.started(message.started_at)
        usage: Usage | None = None
        finish_reason: str | None = None
        self.requests += 1
        async for chunk in stream:
            if chunk.text or chunk.thinking:
                recorder.token(chunk.tokens)
                yield Chunk(text=chunk.text, thinking=chunk.thinking, tokens=chunk.tokens)
            if chunk.done:
                usage = chunk.usage
                finish_reason = chunk.finish_reason
        metrics = recorder.finish(
            input_tokens=usage.input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None,
            server=(usage.server or {}) if usage else {},
        )
        self.last_metrics = metrics
        yield Chunk(done=True, metrics=metrics, finish_reason=finish_reason or "stop")

    async def _embed_measured(self, message: Message) -> Embeddings:
        recorder = MetricsRecorder(message.correlation_id, "embed", sent_at=message.sent_at)
        recorder.started(message.started_at)
        self.requests += 1
        result = await self.run_embed(message.payload, message)
        metrics = recorder.finish(
            input_tokens=result.metrics.input_tokens if result.metrics else None,
            output_tokens=0,
            server=result.metrics.server if result.metrics else {},
        )
        self.last_metrics = metrics
        return result.model_copy(update={"metrics": metrics})

    # ----- helpers -------------------------------------------------------------------------------------
    def _options(self, options: GenerationOptions | dict[str, Any] | None) -> GenerationOptions:
        if options is None:
            return self.default_options
        given = options if isinstance(options, GenerationOptions) else GenerationOptions.model_validate(options)
        merged = self.default_options.model_dump(exclude_unset=True) | given.model_dump(exclude_unset=True)
        return GenerationOptions.model_validate(merged)

    def _check(self, operation: str) -> None:
        if not self.capabilities.supports(operation):
            reason = self.capabilities.notes.get(operation, "")
            raise NotSupported(f"{self.runtime} ({self.model})", operation, reason)

    def _send_text(self, operation: str, request: BaseModel) -> TextReply:
        self._check(operation)
        reply = self.send(operation, request, stream=True, aggregate=Completion.from_chunks, reply_class=TextReply)
        return reply  # type: ignore[return-value]
