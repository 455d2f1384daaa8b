"""Agreement between actors' answers to the same prompts: equal or not, where they first differ,
how alike they are, and, for embeddings, the cosine similarity of their vectors.

Divergence is counted in **characters** (Unicode code points) of the answer text, not tokens:
actors of different runtimes or models tokenize differently, and characters are what a reader
sees. Similarity is the normalised Levenshtein similarity on characters (rapidfuzz: 1 - distance /
length of the longer answer; 1.0 for identical answers, including two empty ones).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import TypeVar

from rapidfuzz.distance import Levenshtein

from workbench.sessions.schema import PairAgreement, PromptAgreement, RequestRecord

A = TypeVar("A")


def first_divergence(a: str, b: str) -> int | None:
    """The index of the first character where `a` and `b` differ (the shorter one's length when one
    is a prefix of the other); None when they are identical."""
    if a == b:
        return None
    limit = min(len(a), len(b))
    for index in range(limit):
        if a[index] != b[index]:
            return index
    return limit


def similarity(a: str, b: str) -> float:
    """Normalised Levenshtein similarity of two texts, 0..1 (1.0 = identical)."""
    return float(Levenshtein.normalized_similarity(a, b))


def cosine(u: Sequence[float], v: Sequence[float]) -> float:
    """Cosine similarity of two vectors of the same length (0.0 when either is all zeros)."""
    if len(u) != len(v):
        raise ValueError(f"vectors differ in length ({len(u)} and {len(v)})")
    dot = math.fsum(x * y for x, y in zip(u, v))
    norm = math.sqrt(math.fsum(x * x for x in u)) * math.sqrt(math.fsum(y * y for y in v))
    return dot / norm if norm else 0.0


def compare_texts(prompt_index: int, a: str, b: str) -> PromptAgreement:
    divergence = first_divergence(a, b)
    return PromptAgreement(prompt_index=prompt_index, identical=divergence is None,
                           first_divergence=divergence, similarity=similarity(a, b))


def compare_vectors(prompt_index: int, a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> PromptAgreement:
    """One embed request's batch from two actors: the mean cosine over the batch's texts."""
    if len(a) != len(b) or not a:
        raise ValueError(f"batches differ in size ({len(a)} and {len(b)})")
    values = [cosine(u, v) for u, v in zip(a, b)]
    identical = all(list(u) == list(v) for u, v in zip(a, b))
    return PromptAgreement(prompt_index=prompt_index, identical=identical, cosine=sum(values) / len(values))


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def pair_agreement(a: str, b: str, prompts: Sequence[PromptAgreement]) -> PairAgreement:
    """Sum up one pair of actors over the prompts both answered."""
    identical = sum(1 for p in prompts if p.identical)
    divergences = [float(p.first_divergence) for p in prompts if p.first_divergence is not None]
    similarities = [p.similarity for p in prompts if p.similarity is not None]
    cosines = [p.cosine for p in prompts if p.cosine is not None]
    return PairAgreement(
        a=a, b=b, compared=len(prompts), identical=identical,
        identical_rate=identical / len(prompts) if prompts else 0.0,
        mean_first_divergence=_mean(divergences),
        mean_similarity=_mean(similarities),
        mean_cosine=_mean(cosines),
        min_cosine=min(cosines) if cosines else None,
        prompts=list(prompts),
    )


def answers_by_actor(records: Sequence[RequestRecord]) -> dict[str, dict[int, str]]:
    """Each actor's answer per prompt: the first successful one, from the lowest concurrency level
    (greedy answers do not depend on the level; the lowest is the least disturbed)."""
    found: dict[str, dict[int, str]] = {}
    for record in sorted(records, key=lambda r: (r.concurrency, r.repeat)):
        if record.ok and record.answer is not None:
            found.setdefault(record.actor, {}).setdefault(record.prompt_index, record.answer)
    return found


def _pairs(found: Mapping[str, Mapping[int, A]], actors: Sequence[str],
           compare: Callable[[int, A, A], PromptAgreement]) -> list[PairAgreement]:
    """Every pair of `actors` (in order) over the prompts both answered."""
    pairs = []
    for a, b in combinations(actors, 2):
        mine, theirs = found.get(a, {}), found.get(b, {})
        shared = sorted(set(mine) & set(theirs))
        pairs.append(pair_agreement(a, b, [compare(i, mine[i], theirs[i]) for i in shared]))
    return pairs


def text_agreement(answers: Mapping[str, Mapping[int, str]], actors: Sequence[str]) -> list[PairAgreement]:
    """Every pair of `actors` over the prompts both answered (texts)."""
    return _pairs(answers, actors, compare_texts)


def vector_agreement(
    vectors: Mapping[str, Mapping[int, Sequence[Sequence[float]]]], actors: Sequence[str]
) -> list[PairAgreement]:
    """Every pair of `actors` over the embed batches both answered (cosine per text, averaged)."""
    return _pairs(vectors, actors, compare_vectors)


@dataclass(frozen=True, slots=True)
class AlignedAnswer:
    """One answer split at the point it leaves the reference answer: `same` then `rest`."""

    label: str
    same: str
    rest: str
    first_divergence: int | None
    similarity: float


def align_answers(answers: Sequence[tuple[str, str]]) -> list[AlignedAnswer]:
    """Answers (label, text) aligned against the first one, the reference: each split where it first
    leaves the reference; the reference itself is split where the earliest other answer leaves it."""
    if not answers:
        return []
    reference = answers[0][1]
    found = [first_divergence(reference, text) for _, text in answers[1:]]
    earliest = min((index for index in found if index is not None), default=None)
    aligned = []
    for (label, text), index in zip(answers, [earliest, *found]):
        cut = len(text) if index is None else min(index, len(text))
        aligned.append(AlignedAnswer(label, text[:cut], text[cut:], index, similarity(reference, text)))
    return aligned
