"""The torch engine's tokenizer and chat template, built from the GGUF alone, against transformers'.

Also: the shared streaming detokenizer (on our tokenizer and on a transformers fast tokenizer), the
sandboxed chat template, and `torch:` answering in a process where transformers cannot be imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from workbench.engine import GGUFError, default_smollm2_path
from workbench.engine.gguf_weights import GGUFFile
from workbench.engine.tokenizer import EngineTokenizer
from workbench.textgen.chat_template import ChatTemplate, ChatTemplateError
from workbench.textgen.detokenize import IncrementalDetokenizer

PARITY_PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain recursion in one paragraph.",
]
TRICKY = [
    "Grüße, naïve café — 世界 👋🏽 ok",
    "  leading  and trailing  \n\n\ttabs ",
    "😀😃😄 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u200b zero-width \r\n",
    "123456789 3.14159 can't WON'T I'M they'll",
    "<|im_start|>user\nspecial tokens in text<|im_end|>",
    "<think>a thought</think>   ",
    "Ελληνικά, русский, עברית, العربية, हिन्दी, 日本語のテキスト",
    "def f(x):\n    return x ** 2  # comment\n",
    "",
    " ",
    "a" * 300,
]
CONVERSATIONS: list[list[dict[str, Any]]] = [
    [{"role": "user", "content": prompt} for prompt in PARITY_PROMPTS[:1]],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi 👋"}],
    [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "2+2?"},
    ],
]


@pytest.fixture(scope="module")
def gguf() -> GGUFFile:
    return GGUFFile(default_smollm2_path())


@pytest.fixture(scope="module")
def ours(gguf: GGUFFile) -> EngineTokenizer:
    return EngineTokenizer.from_gguf_metadata(gguf.metadata)


@pytest.fixture(scope="module")
def theirs() -> Any:
    """transformers' tokenizer converted from the same GGUF (the reference only; tests, not inference)."""
    from transformers import AutoTokenizer

    path = default_smollm2_path()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)


@pytest.mark.parametrize("text", PARITY_PROMPTS + TRICKY)
def test_ids_and_text_equal_transformers(ours: EngineTokenizer, theirs: Any, text: str) -> None:
    ids = ours.encode(text)
    assert ids == theirs.encode(text, add_special_tokens=False)
    assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True)
    assert ours.decode(ids, skip_special_tokens=False) == text  # byte-level BPE is lossless


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_chat_template_equals_transformers(ours: EngineTokenizer, theirs: Any, messages: list[dict[str, Any]]) -> None:
    text = ours.render_chat(messages)
    assert text == theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ours.apply_chat_template(messages) == theirs.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=True, return_dict=False
    )
    assert ours.render_chat(messages, add_generation_prompt=False) == theirs.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=False
    )


def test_special_tokens(ours: EngineTokenizer, theirs: Any) -> None:
    assert ours.eos_token_id == theirs.eos_token_id == 2
    assert ours.vocab_size == len(theirs)
    assert ours.encode("<|im_end|>") == [2]  # a control token written in the text stays whole
    assert ours.decode([1, 42, 2]) == theirs.decode([1, 42, 2], skip_special_tokens=True)


# -- streaming detokenisation ------------------------------------------------------------------
@pytest.mark.parametrize("text", TRICKY)
def test_streaming_detokenizer_equals_full_decode(ours: EngineTokenizer, text: str) -> None:
    ids = ours.encode(text)
    detokenizer = ours.stream_decoder()
    pieces = [detokenizer.push(token) for token in ids] + [detokenizer.flush()]
    assert "".join(pieces) == ours.decode(ids)
    assert all("\ufffd" not in piece for piece in pieces)


def test_characters_split_across_tokens_wait_until_whole(ours: EngineTokenizer) -> None:
    ids = ours.encode("👋🏽")
    assert len(ids) > 2  # the emoji really is split across tokens
    detokenizer = ours.stream_decoder()
    pieces = [detokenizer.push(token) for token in ids]
    assert pieces[0] == "" and "".join(pieces) == "👋🏽"


def test_flush_gives_an_incomplete_character_as_a_full_decode_would(ours: EngineTokenizer) -> None:
    ids = ours.encode("ok 👋")[:-1]  # cut inside the emoji's bytes
    detokenizer = ours.stream_decoder()
    shown = "".join(detokenizer.push(token) for token in ids)
    assert shown + detokenizer.flush() == ours.decode(ids)
    assert ours.decode(ids).endswith("\ufffd") and not shown.endswith("\ufffd")


def test_detokenizer_serves_a_transformers_tokenizer_too(ours: EngineTokenizer, theirs: Any) -> None:
    ids = ours.encode(TRICKY[0])
    mine, other = ours.stream_decoder(), IncrementalDetokenizer(theirs)
    assert [mine.push(t) for t in ids] == [other.push(t) for t in ids]


def test_detokenizer_refuses_a_tokenizer_it_cannot_stream() -> None:
    with pytest.raises(TypeError, match="fast"):
        IncrementalDetokenizer(object())


# -- chat template ------------------------------------------------------------------------------
def test_template_runs_in_a_sandbox() -> None:
    escape = ChatTemplate("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(Exception, match="unsafe|access"):
        escape.render([{"role": "user", "content": "x"}])
    with pytest.raises(ChatTemplateError, match="no system"):
        ChatTemplate("{{ raise_exception('no system') }}").render([])
    with pytest.raises(ChatTemplateError, match="does not compile"):
        ChatTemplate("{% for %}")
    extras = ChatTemplate("{{ messages[0] | tojson }}{% if enable_thinking %}T{% endif %}{{ bos_token }}",
                          special_tokens={"bos_token": "<s>"})
    assert extras.render([{"role": "user", "content": "é<"}], enable_thinking=True) == '{"role": "user", "content": "é<"}T<s>'
    assert extras.knows_thinking


def test_other_tokenizer_kinds_are_refused_by_name(gguf: GGUFFile) -> None:
    metadata = dict(gguf.metadata, **{"tokenizer.ggml.model": "llama"})
    with pytest.raises(GGUFError, match="'llama'"):
        EngineTokenizer.from_gguf_metadata(metadata, "x.gguf")


# -- no transformers at inference -----------------------------------------------------------------
_BLOCKER = '''
import sys

class _NoTransformers:
    """Import hook: `import transformers` fails in this process, as if it were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "transformers" or name.startswith("transformers."):
            raise ImportError(f"blocked for this test: {name}")
        return None

sys.meta_path.insert(0, _NoTransformers())
'''


def test_torch_runtime_answers_without_transformers(tmp_path: Path) -> None:
    """`workbench run torch:smollm2` in a process (and any process it starts) where transformers cannot load."""
    (tmp_path / "sitecustomize.py").write_text(_BLOCKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    probe = subprocess.run([sys.executable, "-c", "import transformers"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked for this test" in probe.stderr  # the blocker really works
    done = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "run", "torch:smollm2", "--json", "--threads", "1",
         "--max-tokens", "24", "What is the capital of France?"],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout)
    assert "Paris" in json.dumps(answer), answer
