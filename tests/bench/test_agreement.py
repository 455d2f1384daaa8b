"""Agreement on constructed answers: identical, diverging at a known character, embeddings."""

from __future__ import annotations

import math

import pytest

from workbench.bench.agreement import (
    align_answers,
    answers_by_actor,
    compare_vectors,
    cosine,
    first_divergence,
    similarity,
    text_agreement,
    vector_agreement,
)
from workbench.sessions.schema import RequestRecord


def test_first_divergence_and_similarity() -> None:
    assert first_divergence("The capital is Paris.", "The capital is Paris.") is None
    assert first_divergence("The capital is Paris.", "The capital is Lyon.") == 15
    assert first_divergence("abc", "abcdef") == 3  # a prefix parts where it ends
    assert first_divergence("", "x") == 0
    assert similarity("same", "same") == 1.0 and similarity("", "") == 1.0
    assert similarity("abcd", "abcx") == pytest.approx(0.75)  # one edit in four characters
    assert similarity("abc", "xyz") == 0.0


def test_cosine() -> None:
    assert cosine([1.0, 0.0], [2.0, 0.0]) == pytest.approx(1.0)
    assert cosine([1.0, 0.0], [0.0, 3.0]) == pytest.approx(0.0)
    assert cosine([1.0, 1.0], [1.0, 0.0]) == pytest.approx(1 / math.sqrt(2))
    assert cosine([0.0, 0.0], [1.0, 0.0]) == 0.0
    with pytest.raises(ValueError, match="length"):
        cosine([1.0], [1.0, 2.0])


def _record(actor: str, prompt: int, answer: str | None, ok: bool = True, level: int = 1) -> RequestRecord:
    return RequestRecord(actor=actor, concurrency=level, prompt_index=prompt, ok=ok, answer=answer,
                         error=None if ok else "boom")


def test_text_agreement_per_pair() -> None:
    records = [
        _record("a", 0, "Paris is the capital."), _record("b", 0, "Paris is the capital."),
        _record("a", 1, "12 times 12 is 144."), _record("b", 1, "12 times 12 is 124."),
        _record("a", 2, "yes"), _record("b", 2, None, ok=False),  # b failed: prompt 2 not compared
        _record("a", 1, "ignored: a later level", level=2),
        _record("c", 0, "Lyon"), _record("c", 1, "12 times 12 is 144."),
    ]
    answers = answers_by_actor(records)
    assert answers["a"][1] == "12 times 12 is 144."  # the lowest level's answer
    pairs = {(p.a, p.b): p for p in text_agreement(answers, ["a", "b", "c"])}
    ab = pairs[("a", "b")]
    assert (ab.compared, ab.identical, ab.identical_rate) == (2, 1, 0.5)
    assert ab.mean_first_divergence == 16.0  # only the differing answer counts: "...is 1|44"
    assert ab.mean_similarity == pytest.approx((1.0 + 18 / 19) / 2)
    assert [p.prompt_index for p in ab.prompts] == [0, 1] and ab.prompts[0].first_divergence is None
    ac = pairs[("a", "c")]
    assert (ac.identical, ac.mean_first_divergence) == (1, 0.0)
    assert set(pairs) == {("a", "b"), ("a", "c"), ("b", "c")}


def test_no_shared_prompts_is_zero_compared() -> None:
    pair = text_agreement({"a": {0: "x"}, "b": {1: "y"}}, ["a", "b"])[0]
    assert pair.compared == 0 and pair.identical_rate == 0.0 and pair.mean_similarity is None


def test_vector_agreement() -> None:
    same = [[1.0, 0.0], [0.0, 1.0]]
    rotated = [[1.0, 0.0], [1.0, 1.0]]
    pair = vector_agreement({"a": {0: same}, "b": {0: rotated}}, ["a", "b"])[0]
    assert pair.compared == 1 and pair.identical == 0
    assert pair.mean_cosine == pytest.approx((1.0 + 1 / math.sqrt(2)) / 2)
    assert pair.min_cosine == pytest.approx((1.0 + 1 / math.sqrt(2)) / 2)
    assert pair.mean_similarity is None and pair.mean_first_divergence is None
    assert compare_vectors(3, same, same).identical
    with pytest.raises(ValueError, match="batches differ"):
        compare_vectors(0, same, same[:1])


def test_align_answers_marks_the_first_divergence() -> None:
    aligned = align_answers([("t", "The capital is Paris."), ("o", "The capital is Lyon."), ("s", "The capital is Paris.")])
    assert [(a.same, a.rest) for a in aligned] == [
        ("The capital is ", "Paris."), ("The capital is ", "Lyon."), ("The capital is Paris.", ""),
    ]
    assert [a.first_divergence for a in aligned] == [15, 15, None]
    assert aligned[0].similarity == 1.0 and aligned[1].similarity < 1.0
    assert align_answers([]) == []
