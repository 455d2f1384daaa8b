"""The data that crosses the runtime boundary: chat messages (OpenAI shape), options, chunks, results."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from workbench.metrics.memory import ProcessMemory
from workbench.metrics.request import RequestMetrics

Role = Literal["system", "user", "assistant", "tool"]


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"] = "text"
    text: str


class ImageURL(BaseModel):
    """Only `data:` URLs: checked here, so a bad image is refused where it enters, not in a runtime."""

    model_config = ConfigDict(extra="forbid")
    url: str
    detail: str | None = None

    @field_validator("url")
    @classmethod
    def _must_decode(cls, url: str) -> str:
        decode_data_url(url)
        return url


class ImagePart(BaseModel):
    """An image as OpenAI sends it: `{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["image_url"] = "image_url"
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,(?P<data>.*)$", re.S)


def decode_data_url(url: str) -> tuple[str, bytes]:
    """(mime type, bytes) of a `data:` URL. Remote URLs are refused: workbench never fetches images."""
    match = _DATA_URL.match(url)
    if match is None:
        shown = url if len(url) < 60 else url[:57] + "..."
        raise ValueError(f"image_url must be a data: URL (data:image/png;base64,...), got {shown!r}")
    mime = match["mime"] or "text/plain"
    if not match["b64"]:
        from urllib.parse import unquote_to_bytes

        return mime, unquote_to_bytes(match["data"])
    try:
        return mime, base64.b64decode(match["data"], validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"image_url data is not valid base64: {error}") from None


def encode_data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class ChatMessage(BaseModel):
    """One chat turn. `content` is text, or a list of parts (text and `image_url`)."""

    model_config = ConfigDict(extra="forbid")
    role: Role
    content: str | list[ContentPart]
    thinking: str | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    def images(self) -> list[bytes]:
        """The raw bytes of every image part."""
        if isinstance(self.content, str):
            return []
        return [decode_data_url(part.image_url.url)[1] for part in self.content if isinstance(part, ImagePart)]

    def image_urls(self) -> list[str]:
        if isinstance(self.content, str):
            return []
        return [part.image_url.url for part in self.content if isinstance(part, ImagePart)]


def as_messages(conversation: str | ChatMessage | dict[str, Any] | list[Any]) -> list[ChatMessage]:
    """Accept a prompt string, one message, or a list of messages/dicts; always give a list of messages."""
    if isinstance(conversation, str):
        return [ChatMessage(role="user", content=conversation)]
    if isinstance(conversation, (ChatMessage, dict)):
        conversation = [conversation]
    return [item if isinstance(item, ChatMessage) else ChatMessage.model_validate(item) for item in conversation]


ThinkLevel = bool | Literal["low", "medium", "high"]


class GenerationOptions(BaseModel):
    """Options every runtime understands; `extra` carries runtime-specific ones (num_ctx, keep_alive...)."""

    model_config = ConfigDict(extra="forbid")
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    think: ThinkLevel | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def greedy(self) -> bool:
        return self.temperature is not None and self.temperature == 0.0


@dataclass(frozen=True, slots=True)
class Usage:
    """What a runtime reports about a finished request, on its final chunk."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    server: dict[str, float] | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a streamed answer: an answer delta, a thinking delta, or the final chunk with metrics.

    `tokens` is how many output tokens the delta holds, when the runtime knows (None: unknown).
    A runtime's own final chunk carries `usage`; the one callers see carries `metrics`.
    """

    text: str = ""
    thinking: str = ""
    tokens: int | None = None
    done: bool = False
    metrics: RequestMetrics | None = None
    finish_reason: str | None = None
    usage: Usage | None = None


class Completion(BaseModel):
    """The complete form of a text operation: the whole answer, its thinking, and its metrics."""

    text: str
    thinking: str = ""
    metrics: RequestMetrics | None = None
    finish_reason: str | None = None

    @classmethod
    def from_chunks(cls, chunks: list[Chunk]) -> Completion:
        final = next((chunk for chunk in reversed(chunks) if chunk.done), None)
        return cls(
            text="".join(chunk.text for chunk in chunks),
            thinking="".join(chunk.thinking for chunk in chunks),
            metrics=final.metrics if final else None,
            finish_reason=final.finish_reason if final else None,
        )


class Embeddings(BaseModel):
    """Vectors for a batch of inputs, in input order. `method` says how they were made (e.g. "mean-pooled")."""

    vectors: list[list[float]]
    model: str
    normalized: bool
    method: str = "encoder"
    metrics: RequestMetrics | None = None

    @property
    def dimensions(self) -> int:
        return len(self.vectors[0]) if self.vectors else 0


class Capabilities(BaseModel):
    """What a runtime can do; an operation it cannot do raises NotSupported and is False here."""

    generate: bool = True
    chat: bool = True
    complete: bool = True
    think: bool = False
    embed: bool = False
    summarize_text: bool = True
    summarize_image: bool = False
    streaming: bool = True
    notes: dict[str, str] = Field(default_factory=dict)

    def supports(self, operation: str) -> bool:
        return bool(getattr(self, operation, False))


class RuntimeStats(BaseModel):
    """What `stats()` reports: identity, resources, and the last request's metrics."""

    runtime: str
    model: str
    actor: str
    state: str
    parameters: int | None = None
    dtype: str | None = None
    device: str | None = None
    threads: int | None = None
    memory_bytes: int | None = None
    load_time_s: float | None = None
    queued: int = 0
    requests: int = 0
    errors: int = 0
    restarts: int = 0
    last_request: RequestMetrics | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    # In-process runtimes: where the model runs ({"kind": "thread"|"process"|..., "pid", "node"}) and
    # that process's memory (RSS/USS now, baseline before the model loaded).
    placement: dict[str, Any] | None = None
    memory: ProcessMemory | None = None
