"""Tokenizer for a GGUF model plus streaming-safe incremental detokenisation.

The tokenizer itself comes from transformers (its GGUF converter builds the BPE from the file's
``tokenizer.ggml.*`` metadata, chat template included); only the model and generation are ours.
That conversion takes seconds, so the converted tokenizer is saved to a user cache keyed by the
file's path, size and mtime and reloaded from there next time.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ._cache import engine_cache_dir

__all__ = ["EngineTokenizer", "StreamDecoder", "load_tokenizer"]


def _cache_root() -> Path:
    return engine_cache_dir("tokenizers")


def load_tokenizer(path: Path) -> EngineTokenizer:
    """Tokenizer for the GGUF at ``path`` from local files only (cached conversion)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = _cache_root() / key
    tok: Any = None
    if (cached / "tokenizer.json").exists():
        try:
            tok = AutoTokenizer.from_pretrained(str(cached), local_files_only=True)
        except Exception:  # a stale or partial cache entry: rebuild it below
            tok = None
    if tok is None:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
        try:
            tmp = cached.with_name(f"{key}.tmp{os.getpid()}")
            tok.save_pretrained(str(tmp))
            if not cached.exists():
                os.replace(tmp, cached)
        except OSError:
            pass  # caching is an optimisation only
    return EngineTokenizer(tok)


class EngineTokenizer:
    """Thin typed wrapper over a transformers fast tokenizer."""

    def __init__(self, tok: Any) -> None:
        self.hf = tok

    @property
    def eos_token_id(self) -> int | None:
        return self.hf.eos_token_id

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text`` (no BOS: this GGUF sets ``add_bos_token = False``)."""
        return list(self.hf.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; no space clean-up, so decoding is prefix-stable for streaming."""
        return str(
            self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False)
        )

    def apply_chat_template(
        self, messages: Iterable[dict[str, Any]], *, add_generation_prompt: bool = True
    ) -> list[int]:
        """Token ids of ``messages`` rendered with the template stored in the GGUF."""
        out = self.hf.apply_chat_template(
            list(messages), add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=False
        )
        if isinstance(out, dict) or hasattr(out, "keys"):
            out = out["input_ids"]
        return [int(i) for i in out]

    def stream_decoder(self, *, skip_special_tokens: bool = True) -> StreamDecoder:
        """A fresh incremental decoder."""
        return StreamDecoder(self, skip_special_tokens=skip_special_tokens)


class StreamDecoder:
    """Turn a token stream into text pieces whose concatenation equals decoding the whole stream.

    Byte-level BPE splits multi-byte characters across tokens; decoding such a prefix yields
    U+FFFD. We decode a small window (from the last stable point) and emit only the new suffix once
    it no longer ends in a partial character.
    """

    def __init__(self, tokenizer: EngineTokenizer, *, skip_special_tokens: bool = True) -> None:
        self._tok = tokenizer
        self._skip = skip_special_tokens
        self.ids: list[int] = []
        self._prefix = 0  # start of the decode window
        self._read = 0  # tokens already turned into emitted text

    def push(self, token_id: int) -> str:
        """Add one token; return the newly stable text (possibly empty)."""
        self.ids.append(int(token_id))
        before = self._tok.decode(self.ids[self._prefix : self._read], skip_special_tokens=self._skip)
        now = self._tok.decode(self.ids[self._prefix :], skip_special_tokens=self._skip)
        if len(now) > len(before) and not now.endswith("\ufffd"):
            self._prefix = self._read
            self._read = len(self.ids)
            return now[len(before) :]
        return ""

    def flush(self) -> str:
        """Whatever is still pending at the end of the stream (may contain U+FFFD)."""
        before = self._tok.decode(self.ids[self._prefix : self._read], skip_special_tokens=self._skip)
        now = self._tok.decode(self.ids[self._prefix :], skip_special_tokens=self._skip)
        self._prefix = self._read = len(self.ids)
        return now[len(before) :]
