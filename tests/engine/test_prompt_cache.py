"""The engine's prompt cache: a prompt that starts like the last one prefills only what is new,
and the answer is the one a fresh cache gives."""

from __future__ import annotations

import pytest

from workbench.engine import LlamaEngine, SamplingParams
from workbench.engine.generate import generate_tokens

THREADS = 1
PARAMS = SamplingParams(max_new_tokens=24, min_new_tokens=24)


@pytest.fixture(scope="module")
def engine() -> LlamaEngine:
    return LlamaEngine.load(threads=THREADS)


def _fresh(engine: LlamaEngine, ids: list[int]) -> list[int]:
    """Greedy tokens with a cache of its own (no reuse)."""
    return list(generate_tokens(engine.model, ids, PARAMS))


def test_load_warms_up_and_keeps_the_template_preamble(engine: LlamaEngine) -> None:
    preamble = engine.chat_input_ids([{"role": "user", "content": "x"}])[:20]
    assert engine.prompt_cache.ids[:20] == preamble  # the warm-up's prompt is in the cache
    timings: dict[str, float] = {}
    ids = engine.chat_input_ids([{"role": "user", "content": "What is the capital of France?"}])
    assert list(engine.generate(ids, PARAMS, timings=timings)) == _fresh(engine, ids)
    assert timings["reused_tokens"] >= 20 and timings["prefill_s"] > 0 and timings["first_sample_s"] > 0
    assert 0 < timings["prefill_cpu_s"] < 10 * timings["prefill_s"]


def test_next_turn_reuses_the_conversation_and_answers_the_same(engine: LlamaEngine) -> None:
    first = [{"role": "user", "content": "Name a colour."}]
    ids = engine.chat_input_ids(first)
    answer = list(engine.generate(ids, PARAMS))
    follow = first + [{"role": "assistant", "content": engine.tokenizer.decode(answer)},
                      {"role": "user", "content": "And another one?"}]
    next_ids = engine.chat_input_ids(follow)
    timings: dict[str, float] = {}
    assert list(engine.generate(next_ids, PARAMS, timings=timings)) == _fresh(engine, next_ids)
    assert timings["reused_tokens"] >= len(ids)  # the whole first turn came from the cache


def test_identical_prompt_still_runs_its_last_token(engine: LlamaEngine) -> None:
    ids = engine.chat_input_ids([{"role": "user", "content": "Say hi."}])
    first = list(engine.generate(ids, PARAMS))
    timings: dict[str, float] = {}
    assert list(engine.generate(ids, PARAMS, timings=timings)) == first
    assert timings["reused_tokens"] == len(ids) - 1


def test_an_older_generation_cannot_resume_over_a_newer_one(engine: LlamaEngine) -> None:
    ids = engine.chat_input_ids([{"role": "user", "content": "Count to ten."}])
    older = engine.generate(ids, PARAMS)
    next(older)
    newer = list(engine.generate(ids, PARAMS))
    assert len(newer) == PARAMS.max_new_tokens
    with pytest.raises(RuntimeError, match="newer generation"):
        next(older)


def test_clear_frees_the_cache(engine: LlamaEngine) -> None:
    assert engine.prompt_cache.nbytes > 0
    engine.prompt_cache.clear()
    assert engine.prompt_cache.nbytes == 0 and engine.prompt_cache.ids == []
    ids = engine.chat_input_ids([{"role": "user", "content": "Hello"}])
    timings: dict[str, float] = {}
    assert list(engine.generate(ids, PARAMS, timings=timings)) == _fresh(engine, ids)
    assert timings["reused_tokens"] == 0


def test_truncate_keeps_only_the_first_ids(engine: LlamaEngine) -> None:
    ids = engine.chat_input_ids([{"role": "user", "content": "Name a city."}])
    first = list(engine.generate(ids, PARAMS))
    engine.prompt_cache.truncate(10)
    assert engine.prompt_cache.ids == ids[:10]
    timings: dict[str, float] = {}
    assert list(engine.generate(ids, PARAMS, timings=timings)) == first
    assert timings["reused_tokens"] == 10
