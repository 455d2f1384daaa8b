"""Seed 002's message kinds, named in one place for every layer: `query` asks for an answer, `read`
only adds input to an actor's conversation (a `forget` undoes that, so it is a read too), `nop` asks
nothing (stopping an actor). Spans, the stream log and the control API label messages with these."""

from __future__ import annotations

from typing import Literal

MessageKind = Literal["query", "read", "nop"]

READ_OPERATIONS = ("read", "forget")
NOP_OPERATIONS = ("stop",)


def message_kind(operation: str) -> MessageKind:
    """`query`, `read` or `nop` for an operation name (every operation not named here is a query)."""
    if operation in READ_OPERATIONS:
        return "read"
    if operation in NOP_OPERATIONS:
        return "nop"
    return "query"
