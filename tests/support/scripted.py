"""A small in-process runtime for tests that need a fast, predictable actor.

It is a real in-process actor (worker thread, cancellation, metrics): it "answers" by streaming the
words of the last user message back, one word per token, `delay_s` apart. A prompt containing
`FAIL` raises mid-stream after the first word; `CRASH` raises ActorCrashed (the actor turns FAILED).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from workbench.actors.actor import ActorCrashed, Message
from workbench.runtimes.base import ChatRequest, EmbedRequest, GenerateRequest
from workbench.runtimes.inprocess import InProcessModelRuntimeActor
from workbench.runtimes.types import Capabilities, Chunk, Embeddings, Usage


class ScriptedActor(InProcessModelRuntimeActor):
    runtime = "scripted"
    capabilities = Capabilities(think=True, embed=True)

    def __init__(self, model: str = "echo", *, delay_s: float = 0.0, load_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.delay_s = delay_s
        self.load_s = load_s
        self.loaded = False

    def load(self, progress: Any) -> None:
        progress(0.0, "loading")
        time.sleep(self.load_s)
        if self.model == "missing":
            raise FileNotFoundError("model 'missing' does not exist")
        self.loaded = True
        progress(1.0, "loaded")

    def unload(self) -> None:
        self.loaded = False

    def _words(self, text: str) -> Iterator[str]:
        for index, word in enumerate(text.split()):
            if index == 1 and "FAIL" in text:
                raise ValueError("scripted failure")
            if index == 1 and "CRASH" in text:
                raise ActorCrashed("scripted crash")
            if self.delay_s:
                time.sleep(self.delay_s)
            yield word if index == 0 else " " + word

    def _stream(self, text: str, message: Message, think: bool = False) -> AsyncIterator[Chunk]:
        async def run() -> AsyncIterator[Chunk]:
            def produce(cancel: threading.Event) -> Iterator[str]:
                for word in self._words(text):
                    if cancel.is_set():
                        return
                    yield word

            count = 0
            if think:
                yield Chunk(thinking="considering", tokens=1)
                count += 1
            async for word in self.stream_blocking(produce, message.cancel_event):
                count += 1
                yield Chunk(text=word, tokens=1)
            yield Chunk(done=True, usage=Usage(input_tokens=len(text.split()), output_tokens=count))

        return run()

    def stream_chat(self, request: ChatRequest, message: Message) -> AsyncIterator[Chunk]:
        return self._stream(request.messages[-1].text, message, think=bool(request.options.think))

    def stream_generate(self, request: GenerateRequest, message: Message) -> AsyncIterator[Chunk]:
        return self._stream(request.prompt, message)

    async def run_embed(self, request: EmbedRequest, message: Message) -> Embeddings:
        vectors = [[float(len(text)), float(len(text.split())), 1.0] for text in request.inputs]
        return Embeddings(vectors=vectors, model=self.model, normalized=False, method="scripted")
