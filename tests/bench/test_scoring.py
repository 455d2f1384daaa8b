"""Scoring rules, each with answers that pass and answers that fail; malformed expectations in a
prompt file are refused with their line number."""

from __future__ import annotations

import pytest

from workbench.bench.prompts import builtin_sets, find_expectation, parse_prompt_lines, prompt_text
from workbench.bench.scoring import numbers_in, parse_json_answer, score_answer
from workbench.errors import PromptFileError
from workbench.sessions.schema import Expectation

CASES: list[tuple[dict, str, bool]] = [
    # exact: case-insensitive, surrounding space/quotes and a final full stop ignored
    ({"match": "exact", "value": "hello"}, "Hello.", True),
    ({"match": "exact", "value": "hello"}, '  "hello" ', True),
    ({"match": "exact", "value": "hello"}, "hello there", False),
    ({"match": "exact", "value": "Hello", "case_sensitive": True}, "hello", False),
    # contains
    ({"match": "contains", "value": "Paris"}, "The capital of France is paris.", True),
    ({"match": "contains", "value": "Paris"}, "The capital of France is Lyon.", False),
    ({"match": "contains", "value": "Paris", "case_sensitive": True}, "paris", False),
    # regex
    ({"match": "regex", "value": r"buen[oa]s\s+d[ií]as"}, "In Spanish: ¡Buenos días!", True),
    ({"match": "regex", "value": r"buen[oa]s\s+d[ií]as"}, "Buenas noches", False),
    ({"match": "regex", "value": r"\bAu\b", "case_sensitive": True}, "Its symbol is Au.", True),
    ({"match": "regex", "value": r"\bAu\b", "case_sensitive": True}, "It is gold (au) or Aurum", False),
    # choice: the first option named, as a whole word
    ({"match": "choice", "options": ["yes", "no"], "value": "yes"}, "Yes, the Sun is a star.", True),
    ({"match": "choice", "options": ["yes", "no"], "value": "yes"}, "No. Well, yes.", False),
    ({"match": "choice", "options": ["yes", "no"], "value": "no"}, "Nobody knows.", False),  # "no" not a word
    ({"match": "choice", "options": ["A", "B", "C"]}, "I pick B", True),  # no value: any option is right
    ({"match": "choice", "options": ["A", "B", "C"]}, "I pick D", False),
    # number: last by default, first or any on request, within a tolerance
    ({"match": "number", "value": 144}, "12 times 12 is 144.", True),
    ({"match": "number", "value": 144}, "144 is 12 times 12", False),
    ({"match": "number", "value": 144, "pick": "any"}, "144 is 12 times 12", True),
    ({"match": "number", "value": 12, "pick": "first"}, "12 times 12 is 144.", True),
    ({"match": "number", "value": 3.14, "tolerance": 0.01}, "Pi is about 3.1416", True),
    ({"match": "number", "value": 3.14, "tolerance": 0.001}, "Pi is about 3.1", False),
    ({"match": "number", "value": 1000}, "It costs 1,000 dollars", True),
    ({"match": "number", "value": -3}, "The answer is −3", True),
    ({"match": "number", "value": 8}, "Spiders have eight legs.", False),  # words are not numbers
    # json: parses (whole text, a fence, or the first object), keys, values
    ({"match": "json"}, '{"a": 1}', True),
    ({"match": "json"}, "not json at all", False),
    ({"match": "json", "keys": ["name", "age"]}, 'Sure! ```json\n{"name": "Alice", "age": 30}\n```', True),
    ({"match": "json", "keys": ["name", "age"]}, '{"name": "Alice"}', False),
    ({"match": "json", "keys": ["name"]}, '["name"]', False),  # an array, not an object
    ({"match": "json", "keys": ["name", "age"], "value": {"name": "Alice", "age": 30}},
     'Here: {"name": "alice", "age": 30.0}', True),
    ({"match": "json", "value": {"age": 30}}, '{"name": "Alice", "age": 31}', False),
    ({"match": "json", "value": [1, 2, 3]}, "[1, 2, 3]", True),
    ({"match": "json", "value": [1, 2, 3]}, "[1, 2]", False),
]


@pytest.mark.parametrize(("rule", "answer", "right"), CASES)
def test_rule(rule: dict, answer: str, right: bool) -> None:
    score = score_answer(Expectation.model_validate(rule), answer)
    assert score.correct is right, score.note
    assert score.value == (1.0 if right else 0.0) and score.note


def test_every_rule_has_passing_and_failing_cases() -> None:
    for rule in ("exact", "contains", "regex", "choice", "number", "json"):
        outcomes = {right for spec, _, right in CASES if spec["match"] == rule}
        assert outcomes == {True, False}, rule


def test_numbers_and_json_extraction() -> None:
    assert numbers_in("a 1,234.5 b -2 c 3.") == [1234.5, -2.0, 3.0]
    assert numbers_in("v2 and x3y") == []  # digits inside words are not numbers
    assert parse_json_answer('text {"k": [1, {"x": 2}]} more') == {"k": [1, {"x": 2}]}
    with pytest.raises(ValueError, match="no JSON"):
        parse_json_answer("{broken")


def test_prompt_file_expectations_are_parsed() -> None:
    prompts = parse_prompt_lines(
        '{"prompt": "What is 2+2?", "expected": {"match": "number", "value": 4}}\n'
        '{"messages": [{"role": "user", "content": "Say yes"}], "expected": {"match": "choice", "options": ["yes", "no"], "value": "yes"}}\n'
        '"no expectation"\n'
    )
    assert prompts[0].expected == Expectation(match="number", value=4)
    assert prompts[1].expected is not None and prompts[1].expected.options == ["yes", "no"]
    assert prompts[2].expected is None


@pytest.mark.parametrize(("expected", "problem"), [
    ('{"match": "nearly"}', "expected.match"),
    ('{"match": "regex", "value": "(unclosed"}', "not a valid regular expression"),
    ('{"match": "exact"}', "'exact' needs 'value'"),
    ('{"match": "number", "value": "four"}', "'number' needs 'value': a number"),
    ('{"match": "choice", "options": []}', "'choice' needs 'options'"),
    ('{"match": "choice", "options": ["yes", "no"], "value": "maybe"}', "not one of 'options'"),
    ('{"match": "number", "value": 1, "tolerance": -1}', "expected.tolerance"),
    ('{"match": "contains", "value": "x", "keys": ["a"]}', "'keys' only applies"),
    ('{"match": "contains", "value": "x", "colour": "red"}', "expected.colour"),
    ('"Paris"', "'expected' must be an object"),
])
def test_malformed_expectation_names_its_line(expected: str, problem: str) -> None:
    text = '# scored prompts\n"fine"\n{"prompt": "q", "expected": ' + expected + "}\n"
    with pytest.raises(PromptFileError, match="line 3") as caught:
        parse_prompt_lines(text, "qa.jsonl")
    assert caught.value.line == 3 and problem in caught.value.problem
    assert str(caught.value).startswith("qa.jsonl line 3: bad expectation") or "'expected'" in str(caught.value)


def test_expectation_on_an_embedding_batch_is_refused() -> None:
    with pytest.raises(PromptFileError, match="line 1.*not to 'inputs'"):
        parse_prompt_lines('{"inputs": ["a"], "expected": {"match": "contains", "value": "a"}}')


def test_builtin_scored_set() -> None:
    sets = builtin_sets()
    scored = sets["scored"]
    assert 30 <= len(scored) <= 60 and all(prompt.expected is not None for prompt in scored)
    rules = {prompt.expected.match for prompt in scored if prompt.expected is not None}
    assert {"contains", "number", "choice", "json"} <= rules
    assert sum(1 for prompt in sets["short"] if prompt.expected is not None) >= 5
    texts = [prompt_text(prompt) for prompt in scored]
    assert len(set(texts)) == len(texts)
    assert find_expectation("  What is 9 times 6? ") == Expectation(match="number", value=54)
    assert find_expectation("What is the meaning of life?") is None
