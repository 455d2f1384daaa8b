"""Scoring an answer against a prompt's `Expectation`: right or wrong, and why in a few words.

The rules are the usual ones of evaluation harnesses (lm-eval-harness, promptfoo) kept small:
each returns a `Score`; nothing here raises for a bad answer (an empty or rambling answer is
simply wrong). Expectations themselves are validated when they are loaded (`Expectation`).
Number and JSON extraction are hand-written because they are a few lines each and must tolerate
small models' prose around the answer; JSON itself is parsed with the standard library.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from workbench.sessions.schema import Expectation

_NUMBER = re.compile(r"(?<![\w.])[-−]?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d])|(?<![\w.])[-−]?\d+(?:\.\d+)?(?![\d])")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_TRIM = " \t\r\n\"'`“”‘’"


@dataclass(frozen=True, slots=True)
class Score:
    correct: bool
    note: str

    @property
    def value(self) -> float:
        return 1.0 if self.correct else 0.0


def score_answer(expected: Expectation, answer: str) -> Score:
    """Score `answer` by `expected.match`."""
    return _RULES[expected.match](expected, answer)


def _fold(text: str, expected: Expectation) -> str:
    return text if expected.case_sensitive else text.casefold()


def _short(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _exact(expected: Expectation, answer: str) -> Score:
    def clean(text: str) -> str:
        return _fold(text.strip(_TRIM).rstrip(".!").strip(_TRIM), expected)

    if clean(answer) == clean(expected.value):
        return Score(True, "exact match")
    return Score(False, f"expected exactly {_short(expected.value)}, got {_short(answer)}")


def _contains(expected: Expectation, answer: str) -> Score:
    if _fold(expected.value, expected) in _fold(answer, expected):
        return Score(True, f"contains {_short(expected.value)}")
    return Score(False, f"does not contain {_short(expected.value)}")


def _regex(expected: Expectation, answer: str) -> Score:
    flags = 0 if expected.case_sensitive else re.IGNORECASE
    found = re.search(expected.value, answer, flags)
    if found:
        return Score(True, f"matches at {found.start()}")
    return Score(False, f"no match for /{expected.value}/")


def chosen_option(options: list[str], answer: str) -> str | None:
    """The option the answer names first (whole words, case-insensitive), or None."""
    best: tuple[int, str] | None = None
    for option in options:
        found = re.search(rf"(?<!\w){re.escape(option.strip())}(?!\w)", answer, re.IGNORECASE)
        if found and (best is None or found.start() < best[0]):
            best = (found.start(), option)
    return best[1] if best else None


def _choice(expected: Expectation, answer: str) -> Score:
    chosen = chosen_option(expected.options, answer)
    if chosen is None:
        return Score(False, f"names none of {expected.options}")
    if expected.value is None or chosen.casefold() == expected.value.casefold():
        return Score(True, f"chose {chosen!r}")
    return Score(False, f"chose {chosen!r}, expected {expected.value!r}")


def numbers_in(text: str) -> list[float]:
    """The numbers written in `text` in order ("1,000" is one thousand; "−3" is minus three)."""
    return [float(match.replace(",", "").replace("−", "-")) for match in _NUMBER.findall(text)]


def _number(expected: Expectation, answer: str) -> Score:
    found = numbers_in(answer)
    if not found:
        return Score(False, "no number in the answer")
    target = float(expected.value)
    candidates = {"first": found[:1], "last": found[-1:], "any": found}[expected.pick]
    for number in candidates:
        if math.isclose(number, target, rel_tol=0.0, abs_tol=expected.tolerance + 1e-9):
            return Score(True, f"{number:g} is within {expected.tolerance:g} of {target:g}")
    shown = ", ".join(f"{n:g}" for n in candidates)
    return Score(False, f"{expected.pick} number {shown}, expected {target:g}±{expected.tolerance:g}")


def parse_json_answer(answer: str) -> Any:
    """The JSON value in an answer: the whole text, a fenced block, or the first {...} / [...] span.
    Raises ValueError when none parses."""
    candidates = [answer.strip(), *(block.strip() for block in _FENCE.findall(answer))]
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = answer.find(opener), answer.rfind(closer)
        if 0 <= start < end:
            candidates.append(answer[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    raise ValueError("no JSON value in the answer")


def _json(expected: Expectation, answer: str) -> Score:
    try:
        value = parse_json_answer(answer)
    except ValueError as error:
        return Score(False, str(error))
    if expected.keys or isinstance(expected.value, dict):
        if not isinstance(value, dict):
            return Score(False, f"parsed a JSON {type(value).__name__}, expected an object")
        missing = [key for key in expected.keys if key not in value]
        if missing:
            return Score(False, f"JSON lacks keys {missing}")
        if isinstance(expected.value, dict):
            wrong = [key for key, want in expected.value.items() if not _json_equal(value.get(key), want)]
            if wrong:
                return Score(False, f"JSON differs on {wrong}")
    elif expected.value is not None and not _json_equal(value, expected.value):
        return Score(False, f"JSON is {_short(json.dumps(value))}, expected {_short(json.dumps(expected.value))}")
    return Score(True, "valid JSON" + (" with the keys" if expected.keys else ""))


def _json_equal(found: Any, want: Any) -> bool:
    """Equal as JSON values; strings compare case-insensitively and trimmed (a model's "alice")."""
    if isinstance(found, str) and isinstance(want, str):
        return found.strip().casefold() == want.strip().casefold()
    if isinstance(found, bool) or isinstance(want, bool):
        return found is want
    if isinstance(found, int | float) and isinstance(want, int | float):
        return math.isclose(found, want)
    if isinstance(found, list) and isinstance(want, list):
        return len(found) == len(want) and all(_json_equal(a, b) for a, b in zip(found, want))
    if isinstance(found, dict) and isinstance(want, dict):
        return found.keys() == want.keys() and all(_json_equal(found[k], want[k]) for k in want)
    return bool(found == want)


_RULES = {
    "exact": _exact,
    "contains": _contains,
    "regex": _regex,
    "choice": _choice,
    "number": _number,
    "json": _json,
}
