"""Prompt sets: the built-ins, and JSONL files in every accepted form, with errors naming the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.bench.prompts import (
    builtin_sets,
    chat_messages,
    embed_inputs,
    load_prompts,
    parse_prompt_lines,
    prompt_text,
)
from workbench.errors import PromptFileError


def test_builtin_sets_have_the_promised_shapes() -> None:
    sets = builtin_sets()
    assert set(sets) == {"short", "scored", "long", "embed"}
    assert all(p.messages and p.messages[0].role == "user" for p in sets["short"])
    shortest_long = min(len(prompt_text(p)) for p in sets["long"])
    longest_short = max(len(prompt_text(p)) for p in sets["short"])
    assert shortest_long > 10 * longest_short  # prefill-heavy
    assert all(len(p.inputs) > 1 and not p.messages for p in sets["embed"])


def test_every_jsonl_form_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]}\n'
        "\n"
        "# a comment\n"
        '[{"role": "user", "content": "As a list"}]\n'
        '{"prompt": "Plain prompt"}\n'
        '"Just a string"\n'
        '{"inputs": ["one", "two"]}\n',
        encoding="utf-8",
    )
    prompts = load_prompts(str(path))
    assert [prompt_text(p) for p in prompts] == ["Hi?", "As a list", "Plain prompt", "Just a string", "one\ntwo"]
    assert [m.role for m in prompts[0].messages] == ["system", "user"]
    assert embed_inputs(prompts[4]) == ["one", "two"]
    assert embed_inputs(prompts[2]) == ["Plain prompt"]
    assert chat_messages(prompts[4])[0].text == "one\ntwo"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"prompt": "unterminated', "not valid JSON"),
        ("42", "found int"),
        ('{"text": "wrong key"}', "found keys ['text']"),
        ('{"prompt": ""}', "non-empty string"),
        ('{"messages": [{"role": "robot", "content": "x"}]}', "messages.0.role"),
        ('{"messages": []}', "'messages' is empty"),
        ('{"inputs": []}', "'inputs' must be"),
        ('{"prompt": "a", "inputs": ["b"]}', "found keys"),
    ],
)
def test_a_malformed_line_is_reported_with_its_number(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "fine"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(PromptFileError) as caught:
        load_prompts(str(path))
    assert caught.value.line == 3
    assert f"{path} line 3: " in str(caught.value)
    assert problem in str(caught.value)


def test_missing_and_empty_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError, match="no such prompt file .*short, scored, long, embed"):
        load_prompts(str(tmp_path / "nope.jsonl"))
    with pytest.raises(PromptFileError, match="no prompts"):
        parse_prompt_lines("\n# only a comment\n", "x.jsonl")
