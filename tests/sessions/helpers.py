"""Helpers for the session tests: actors that answer fast, and a recorder-driven chat."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from tests.support.scripted import ScriptedActor
from workbench.actors import ConcurrencyLimit, Message
from workbench.runtimes.base import ChatRequest, TextReply
from workbench.runtimes.types import Chunk, Completion, GenerationOptions
from workbench.sessions.recorder import SessionRecorder


class ContextActor(ScriptedActor):
    """Answers a chat with its model name and the whole conversation it was sent, so a test can see
    exactly which context (and whose earlier answers) a turn carried."""

    runtime = "context"

    def stream_chat(self, request: ChatRequest, message: Message) -> AsyncIterator[Chunk]:
        last = request.messages[-1].text
        if "FAIL" in last or "CRASH" in last:
            return super().stream_chat(request, message)
        seen = " / ".join(f"{m.role}={m.text}" for m in request.messages)
        return self._stream(f"{self.model} saw {seen}", message)


def scripted(model: str = "echo", **kwargs: Any) -> ScriptedActor:
    return ScriptedActor(model, limit=ConcurrencyLimit(8), **kwargs)


def context_actor(model: str) -> ContextActor:
    return ContextActor(model, limit=ConcurrencyLimit(8))


async def ask(
    recorder: SessionRecorder, pane: str, actor: ScriptedActor, prompt: str, history: list[Any] | None = None,
    *, options: GenerationOptions | None = None,
) -> Completion | BaseException:
    """Send a chat the way the app does (reply first, then record the prompt) and wait for its end."""
    reply: TextReply = actor.chat([*(history or []), {"role": "user", "content": prompt}], options=options)
    recorder.record_prompt(pane, prompt, correlation_id=reply.correlation_id, options=options)
    try:
        return await reply
    except Exception as error:
        return error
