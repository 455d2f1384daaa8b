"""A GGUF model's tokenizer and chat template, built from the file's own metadata -- no transformers.

A GGUF carries no `tokenizer.json`: it stores the vocabulary (`tokenizer.ggml.tokens`), the BPE
merges, token types, special token ids and the Jinja chat template (`tokenizer.chat_template`) as
metadata. We build a `tokenizers.Tokenizer` from them the way transformers' GGUF converter does for a
byte-level BPE vocabulary (`tokenizer.ggml.model == "gpt2"`: GPT-2's byte alphabet, its split regex
or the one the file's `tokenizer.ggml.pre` names, control tokens as special tokens, user-defined
ones as plain added tokens), so ids are equal to transformers' (tests check it on tricky text). The
chat template is compiled once at load and rendered in jinja2's sandbox
(:class:`workbench.textgen.chat_template.ChatTemplate`). Building takes ~0.1 s from metadata the
engine reads anyway, so nothing is cached on disk.

Other tokenizer kinds (sentencepiece `llama`, `t5`, ...) are refused with a clear error rather than
tokenized wrongly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

from workbench.textgen.chat_template import ChatTemplate
from workbench.textgen.detokenize import IncrementalDetokenizer

from .gguf_weights import GGUFError

__all__ = ["EngineTokenizer", "tokenizer_from_gguf_metadata"]

_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp's token types

# Split regexes for the `tokenizer.ggml.pre` names of common byte-level vocabularies (the same table
# transformers' converter uses); any other name gets GPT-2's split, as there.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_PRE_SPLITS = {
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon3", "smaug-bpe", "dbrx", "pixtral"), _LLAMA3_SPLIT),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "megrez"), _QWEN2_SPLIT),
}


@lru_cache(maxsize=1)
def _byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (every byte-level BPE vocabulary uses it)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars)}


def tokenizer_from_gguf_metadata(metadata: Mapping[str, Any], source: str = "GGUF") -> Tokenizer:
    """A `tokenizers.Tokenizer` for the byte-level BPE vocabulary described by `metadata`."""
    kind = metadata.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise GGUFError(
            f"{source}: the torch engine's tokenizer handles byte-level BPE vocabularies "
            f"(tokenizer.ggml.model 'gpt2'); this file has {kind!r}"
        )
    tokens: Sequence[str] = metadata.get("tokenizer.ggml.tokens") or ()
    merges: Sequence[str] = metadata.get("tokenizer.ggml.merges") or ()
    if not tokens or not merges:
        raise GGUFError(f"{source}: tokenizer.ggml.tokens or tokenizer.ggml.merges missing")
    alphabet = set(_byte_alphabet().values())
    # Added tokens first: they live as long as the tokenizer, and allocated after the vocabulary's
    # temporaries they would pin those objects' memory (see GGUFStrings). A user-defined token is
    # kept when it is in the vocabulary as spelled, i.e. when it is written in the byte alphabet.
    types: Sequence[int] = metadata.get("tokenizer.ggml.token_type") or ()
    control: list[AddedToken] = []
    user_defined: list[AddedToken] = []
    for index, kind_id in enumerate(types):
        if kind_id in (_CONTROL, _USER_DEFINED):
            token = tokens[index]
            if set(token) <= alphabet:  # other control tokens are llama.cpp mislabels (transformers skips them too)
                (control if kind_id == _CONTROL else user_defined).append(
                    AddedToken(token, normalized=False, special=kind_id == _CONTROL)
                )
    tokenizer = Tokenizer(_bpe(tokens, merges))
    split = _PRE_SPLITS.get(str(metadata.get("tokenizer.ggml.pre") or ""))
    if split is None:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tokenizer.decoder = decoders.ByteLevel()
    if control:
        tokenizer.add_special_tokens(control)
    if user_defined:
        tokenizer.add_tokens(user_defined)
    return tokenizer


def _bpe(tokens: Sequence[str], merges: Sequence[str]) -> models.BPE:
    """The BPE model; its Python-side vocabulary and merge pairs are gone when this returns."""
    spelling = _byte_alphabet()
    alphabet = set(spelling.values())
    vocab = {
        token if set(token) <= alphabet else "".join(spelling[b] for b in token.encode("utf-8")): index
        for index, token in enumerate(tokens)
    }
    pairs = [tuple(merge.split(" ", 1)) for merge in merges]
    return models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False)


class EngineTokenizer:
    """Encode, decode, stream-decode and render the chat template of a GGUF model."""

    def __init__(self, tokenizer: Tokenizer, *, chat_template: str | None, bos_token_id: int | None,
                 eos_token_id: int | None, add_bos_token: bool = False) -> None:
        self.backend = tokenizer
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.add_bos_token = add_bos_token
        names = {
            "bos_token": tokenizer.id_to_token(bos_token_id) if bos_token_id is not None else None,
            "eos_token": tokenizer.id_to_token(eos_token_id) if eos_token_id is not None else None,
        }
        self.chat_template = ChatTemplate(chat_template, special_tokens=names) if chat_template else None

    @classmethod
    def from_gguf_metadata(cls, metadata: Mapping[str, Any], source: str = "GGUF") -> EngineTokenizer:
        """Tokenizer and chat template of the GGUF whose metadata this is (`source` names it in errors)."""
        def optional_int(key: str) -> int | None:
            value = metadata.get(key)
            return None if value is None else int(value)

        return cls(
            tokenizer_from_gguf_metadata(metadata, source),
            chat_template=metadata.get("tokenizer.chat_template"),
            bos_token_id=optional_int("tokenizer.ggml.bos_token_id"),
            eos_token_id=optional_int("tokenizer.ggml.eos_token_id"),
            add_bos_token=bool(metadata.get("tokenizer.ggml.add_bos_token", False)),
        )

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`; special tokens written in the text stay whole. A BOS is added only when
        asked for and the file says the model wants one (`tokenizer.ggml.add_bos_token`)."""
        ids = self.backend.encode(text, add_special_tokens=False).ids
        if add_special_tokens and self.add_bos_token and self.bos_token_id is not None:
            ids = [self.bos_token_id, *ids]
        return ids

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of `ids` (no space clean-up, so decoding is prefix-stable for streaming)."""
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def render_chat(self, messages: Iterable[Mapping[str, Any]], *, add_generation_prompt: bool = True,
                    **extra: Any) -> str:
        """The prompt text for OpenAI-style `messages`, rendered with the GGUF's own chat template."""
        if self.chat_template is None:
            raise GGUFError("this GGUF has no tokenizer.chat_template; send a raw prompt instead")
        return self.chat_template.render(messages, add_generation_prompt=add_generation_prompt, **extra)

    def apply_chat_template(self, messages: Iterable[Mapping[str, Any]], *, add_generation_prompt: bool = True,
                            **extra: Any) -> list[int]:
        """Token ids of `messages` rendered with the template (the template writes any BOS itself)."""
        return self.encode(self.render_chat(messages, add_generation_prompt=add_generation_prompt, **extra))

    def stream_decoder(self, *, skip_special_tokens: bool = True) -> IncrementalDetokenizer:
        """A fresh streaming detokenizer."""
        return IncrementalDetokenizer(self.backend, skip_special_tokens=skip_special_tokens)
