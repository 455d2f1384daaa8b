"""Turning a stream of generated tokens into text chunks: incremental decoding, stop strings, thinking.

Shared by the in-process runtimes (transformers, our torch engine), which generate token ids
themselves and must do what a server would: emit text as soon as it is certain, cut the answer at a
stop string (without showing its first characters), and route `<think>...</think>` to `Chunk.thinking`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from workbench.runtimes.types import ChatMessage, Chunk

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
THINK_INSTRUCTION = (
    "First think about the question step by step inside <think> and </think> tags. "
    "After </think>, give your final answer."
)


def with_think_instruction(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Our thinking convention for models without a thinking template of their own: the instruction
    joins the system prompt (or becomes it); the runtime then opens the `<think>` block itself."""
    if messages and messages[0].role == "system":
        system = ChatMessage(role="system", content=f"{messages[0].text}\n\n{THINK_INSTRUCTION}")
        return [system, *messages[1:]]
    return [ChatMessage(role="system", content=THINK_INSTRUCTION), *messages]


class IncrementalDecoder:
    """Decodes a growing list of token ids and returns only the new text.

    Decoding the whole list each step is what makes multi-token characters and word-initial spaces
    come out right; a trailing U+FFFD means a character is not complete yet, so we wait for it.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str]) -> None:
        self._decode = decode
        self.ids: list[int] = []
        self._emitted = 0

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self._decode(self.ids)
        if text.endswith("\ufffd"):
            return ""
        delta = text[self._emitted:]
        self._emitted = len(text)
        return delta

    def flush(self) -> str:
        text = self._decode(self.ids)
        delta = text[self._emitted:]
        self._emitted = len(text)
        return delta


def _held_back(text: str, markers: Sequence[str]) -> int:
    """How many trailing characters of `text` could be the start of one of `markers`."""
    hold = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), 0, -1):
            if text.endswith(marker[:size]):
                hold = max(hold, size)
                break
    return hold


@dataclass
class StopMatcher:
    """Cuts the text at the first stop string; holds back text that might begin one."""

    stops: Sequence[str]
    _pending: str = ""
    stopped: bool = False

    def push(self, delta: str) -> str:
        """The text that is safe to show now; after a stop string, `stopped` is True and nothing more."""
        if self.stopped:
            return ""
        if not self.stops:
            return delta
        text = self._pending + delta
        positions = [index for stop in self.stops if stop and (index := text.find(stop)) >= 0]
        if positions:
            self.stopped = True
            self._pending = ""
            return text[: min(positions)]
        hold = _held_back(text, self.stops)
        self._pending = text[len(text) - hold:] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        pending, self._pending = self._pending, ""
        return "" if self.stopped else pending


class ThinkSplitter:
    """Routes text inside the first `<think>...</think>` block to `Chunk.thinking`, the rest to `text`.

    `thinking=True` starts inside the block (the prompt already opened it). Text before the first
    non-blank character decides: `<think>` opens the block, anything else means there is none. A tag
    later in the answer is shown as written. Blank text around the block is dropped. Token counts
    given with text that is held back are carried to the next chunk that is shown.
    """

    def __init__(self, thinking: bool = False) -> None:
        self.state = "thinking" if thinking else "start"  # start | thinking | answer
        self._pending = ""
        self._tokens: int | None = None
        self._answer_started = False
        self._thinking_started = False

    def push(self, delta: str, tokens: int | None = None) -> list[Chunk]:
        if tokens is not None:
            self._tokens = (self._tokens or 0) + tokens
        text = self._pending + delta
        self._pending = ""
        out: list[Chunk] = []
        if self.state == "start":
            stripped = text.lstrip()
            if stripped.startswith(THINK_OPEN):
                self.state, text = "thinking", stripped[len(THINK_OPEN):]
            elif THINK_OPEN.startswith(stripped):  # blank, or a prefix of <think>: wait
                self._pending = text
                return []
            else:
                self.state = "answer"
        if self.state == "thinking":
            index = text.find(THINK_CLOSE)
            if index < 0:
                hold = _held_back(text, [THINK_CLOSE])
                out.append(Chunk(thinking=self._thought(text[: len(text) - hold])))
                self._pending = text[len(text) - hold:]
                text = ""
            else:
                out.append(Chunk(thinking=self._thought(text[:index])))
                self.state, text = "answer", text[index + len(THINK_CLOSE):]
        if self.state == "answer" and text:
            out.append(Chunk(text=self._answer(text)))
        return self._count(out)

    def flush(self) -> list[Chunk]:
        pending, self._pending = self._pending, ""
        if self.state == "thinking":
            return self._count([Chunk(thinking=self._thought(pending))])
        return self._count([Chunk(text=self._answer(pending))])

    def _thought(self, text: str) -> str:
        if not self._thinking_started:
            text = text.lstrip()
            self._thinking_started = bool(text)
        return text

    def _answer(self, text: str) -> str:
        if not self._answer_started:
            text = text.lstrip()
            self._answer_started = bool(text)
        return text

    def _count(self, chunks: list[Chunk]) -> list[Chunk]:
        shown = [chunk for chunk in chunks if chunk.text or chunk.thinking]
        if shown and self._tokens is not None:
            last = shown[-1]
            shown[-1] = Chunk(text=last.text, thinking=last.thinking, tokens=self._tokens)
            self._tokens = None
        return shown


def route_text(text: str, tokens: int | None, splitter: ThinkSplitter | None) -> list[Chunk]:
    """Chunks for a decoded delta: through the thinking splitter when thinking is on, else as answer."""
    if splitter is not None:
        return splitter.push(text, tokens)
    return [Chunk(text=text, tokens=tokens)] if text else []
