"""Turning generated text into chunks: the thinking convention and its `<think>...</think>` split.

Shared by the in-process runtimes (transformers, our torch engine), which generate token ids
themselves and must do what a server would. The lower-level pieces they also share -- streaming
detokenisation, the stop-string matcher, the sampler -- live in `workbench.textgen`, below both
`runtimes` and `engine`; this module adds what is about chat chunks: routing `<think>...</think>` to
`Chunk.thinking`, and our thinking prompt for models without a thinking template.
"""

from __future__ import annotations

from workbench.runtimes.types import ChatMessage, Chunk
from workbench.textgen.stops import held_back

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
                hold = held_back(text, [THINK_CLOSE])
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
