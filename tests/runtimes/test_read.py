"""`read` (seed 002): input an actor keeps as context without answering, ahead of every later query."""

from __future__ import annotations

import pytest

from tests.support.scripted import ScriptedActor
from workbench.actors.kinds import message_kind
from workbench.runtimes.base import ReadReceipt
from workbench.runtimes.types import ChatMessage


class Seeing(ScriptedActor):
    """Remembers the messages and prompt each query really got (after the context was put ahead)."""

    seen: list[object]

    def stream_chat(self, request, message):  # noqa: ANN001, ANN201
        self.seen.append([m.text for m in request.messages])
        return super().stream_chat(request, message)

    def stream_generate(self, request, message):  # noqa: ANN001, ANN201
        self.seen.append(request.prompt)
        return super().stream_generate(request, message)


async def test_read_goes_ahead_of_later_queries_in_order_until_forgotten() -> None:
    actor = Seeing("echo")
    actor.seen = []
    try:
        first = actor.read("The capital of Freedonia is Fredville.")
        asked = actor.chat("What is its capital?")  # queued behind the read: sees it
        receipt = await first
        assert receipt == ReadReceipt(read=1, context_messages=1, context_chars=38)
        assert (await asked).text == "What is its capital?"
        await actor.read([{"role": "assistant", "content": "Noted."}])
        await actor.generate("Say it again")
        assert actor.seen == [
            ["The capital of Freedonia is Fredville.", "What is its capital?"],
            "The capital of Freedonia is Fredville.\n\nNoted.\n\nSay it again",
        ]
        assert [m.role for m in actor.context] == ["user", "assistant"]
        assert (await actor.forget()).context_messages == 0
        await actor.chat("Fresh start")
        assert actor.seen[-1] == ["Fresh start"]
        assert actor.requests == 3  # reads are not model requests
    finally:
        await actor.stop()


async def test_read_refuses_nothing_and_holds_no_concurrency_slot() -> None:
    actor = ScriptedActor("echo")
    try:
        with pytest.raises(ValueError, match="read needs something to read"):
            actor.read("   ")
        reply = actor.read(ChatMessage(role="system", content="Answer briefly."))
        assert not reply.message.limited
        assert (await reply).context_messages == 1
    finally:
        await actor.stop()


def test_the_vocabulary_of_message_kinds() -> None:
    assert [message_kind(op) for op in ("chat", "embed", "read", "forget", "stop")] == [
        "query", "query", "read", "read", "nop"]
