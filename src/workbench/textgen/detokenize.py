"""Streaming detokenisation: token ids in, text deltas out, constant work per token.

Built on `tokenizers.decoders.DecodeStream`, which keeps a small window of recent ids and returns a
piece only once it is valid UTF-8: byte-level BPE splits multi-byte characters across tokens, and
decoding such a prefix would give U+FFFD. Re-decoding the whole answer on every token (what we did
before) costs O(n) per token; this does not.
"""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream

__all__ = ["IncrementalDetokenizer", "backend_tokenizer"]


def backend_tokenizer(tokenizer: Any) -> Tokenizer:
    """The `tokenizers.Tokenizer` behind `tokenizer`: itself, or a transformers fast tokenizer's backend."""
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if isinstance(backend, Tokenizer):
        return backend
    raise TypeError(
        f"streaming detokenisation needs a `tokenizers` (fast) tokenizer; got {type(tokenizer).__name__}"
    )


class IncrementalDetokenizer:
    """Turns a token stream into text pieces whose concatenation equals decoding the whole stream.

    `push` returns the newly complete text (possibly ""); `flush` at the end returns whatever is
    still pending (an incomplete character comes out as U+FFFD, as a full decode would give it).
    """

    def __init__(self, tokenizer: Any, *, skip_special_tokens: bool = True) -> None:
        self._tokenizer = backend_tokenizer(tokenizer)
        self._skip = skip_special_tokens
        self._stream = DecodeStream(skip_special_tokens=skip_special_tokens)
        self.ids: list[int] = []
        self._emitted_chars = 0
        self._pending = False

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes."""
        self.ids.append(int(token_id))
        piece = self._stream.step(self._tokenizer, int(token_id))
        if piece is None:
            self._pending = True
            return ""
        self._pending = False
        self._emitted_chars += len(piece)
        return piece

    def flush(self) -> str:
        """Text still held for an incomplete character at the end of the stream (usually "")."""
        if not self._pending:
            return ""
        self._pending = False
        text = self._tokenizer.decode(self.ids, skip_special_tokens=self._skip)
        tail = text[self._emitted_chars:]
        self._emitted_chars = len(text)
        return tail
