"""The engine's prompt cache: a prompt that starts like the last one, or like a saved earlier one,
prefills only what is new, and the answer is the one a fresh cache gives."""

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


def test_truncate_keeps_only_the_first_ids_and_saves_the_prompt_first(engine: LlamaEngine) -> None:
    engine.prompt_cache.clear()  # no saved prompt to reuse the preamble from
    ids = engine.chat_input_ids([{"role": "user", "content": "Name a city."}])
    other = engine.chat_input_ids([{"role": "user", "content": "Name a river."}])
    first = list(engine.generate(ids, PARAMS))
    engine.prompt_cache.truncate(10)
    assert engine.prompt_cache.ids == ids[:10]
    timings: dict[str, float] = {}
    fresh_other = _fresh(engine, other)
    assert list(engine.generate(other, PARAMS, timings=timings)) == fresh_other
    shared = next(i for i, (a, b) in enumerate(zip(ids, other)) if a != b)
    assert shared > 10 and timings["reused_tokens"] == shared  # from the saved copy of the truncated prompt
    assert list(engine.generate(ids, PARAMS, timings=timings)) == first
    assert timings["reused_tokens"] == len(ids) - 1


def test_a_prompt_sent_again_after_others_is_not_prefilled_again(engine: LlamaEngine) -> None:
    """Earlier prompts' keys/values are kept (as llama-server's RAM prompt cache does)."""
    prompts = [engine.chat_input_ids([{"role": "user", "content": text}])
               for text in ("What is 2+2?", "Name a fruit.", "Where is Rome?")]
    answers = [list(engine.generate(ids, PARAMS)) for ids in prompts]
    timings: dict[str, float] = {}
    assert list(engine.generate(prompts[0], PARAMS, timings=timings)) == answers[0] == _fresh(engine, prompts[0])
    assert timings["reused_tokens"] == len(prompts[0]) - 1
    assert engine.prompt_cache.saved_prompts >= 3


def test_a_saved_prompt_comes_back_after_an_answer_that_grew_the_cache(engine: LlamaEngine) -> None:
    """A long answer grows the working cache during generation (an inference tensor from then on);
    restoring a saved prompt into it afterwards must work, not raise about inference tensors."""
    from workbench.engine.model import KVCache

    first = engine.chat_input_ids([{"role": "user", "content": "Tell me about the moon."}])
    long = SamplingParams(max_new_tokens=KVCache.INITIAL + 8, min_new_tokens=KVCache.INITIAL + 8)
    assert len(list(engine.generate(first, long))) == KVCache.INITIAL + 8
    assert engine.prompt_cache.nbytes > 0
    other = engine.chat_input_ids([{"role": "user", "content": "Name a colour."}])
    list(engine.generate(other, PARAMS))
    timings: dict[str, float] = {}
    assert list(engine.generate(first, PARAMS, timings=timings)) == _fresh(engine, first)
    assert timings["reused_tokens"] == len(first) - 1


def test_saved_prompts_stay_within_their_budget_least_recently_used_first_out(engine: LlamaEngine) -> None:
    cache = engine.prompt_cache
    saved_before = cache.saved_bytes
    prompts = [engine.chat_input_ids([{"role": "user", "content": f"Tell me about the number {n}."}]) for n in range(5)]
    cfg = engine.config
    per_prompt = cfg.num_layers * 2 * cfg.num_kv_heads * len(prompts[0]) * cfg.head_dim * 4
    try:
        cache.clear()
        cache.saved_bytes = 2 * per_prompt + per_prompt // 2  # room for two of these prompts
        for ids in prompts:
            list(engine.generate(ids, PARAMS))
        list(engine.generate(prompts[0], PARAMS))  # saves the last one, evicts the oldest kept
        assert cache.saved_prompts == 2 and cache._saved_nbytes() <= cache.saved_bytes
        # kept now: prompts 4 and 3; each request below first saves the one before it (evicting the
        # least recently used), so prompt 0 is kept by the time it comes, and prompt 3 is gone
        for ids, kept in ((prompts[4], True), (prompts[0], True), (prompts[3], False)):
            timings: dict[str, float] = {}
            list(engine.generate(ids, PARAMS, timings=timings))
            assert (timings["reused_tokens"] == len(ids) - 1) is kept, (ids, timings["reused_tokens"])
    finally:
        cache.saved_bytes = saved_before
