"""`TorchRuntimeActor` (our own engine) on the embedded SmolLM2, loaded once for this module."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from workbench.errors import NotSupported
from workbench.runtimes.base import ModelRuntimeActor
from workbench.runtimes.registry import create_actor
from workbench.runtimes.types import ChatMessage, ImagePart, ImageURL, TextPart

QUESTION = "What is the capital of France?"
GREEDY = {"temperature": 0.0}


@pytest.fixture(scope="module")
async def smollm2_torch() -> AsyncIterator[ModelRuntimeActor]:
    actor = create_actor("torch:smollm2", threads=1)
    actor.start()
    await actor.wait_ready()
    yield actor
    await actor.stop()


async def test_chat_answers_paris_and_streams(smollm2_torch: ModelRuntimeActor) -> None:
    options = GREEDY | {"max_tokens": 16}
    chunks = [chunk async for chunk in smollm2_torch.chat(QUESTION, options=options)]
    completion = await smollm2_torch.chat(QUESTION, options=options)
    assert "Paris" in completion.text
    assert "".join(chunk.text for chunk in chunks) == completion.text
    assert len([chunk for chunk in chunks if chunk.text]) > 3
    final = chunks[-1]
    assert final.done and final.metrics is not None
    assert 0 < final.metrics.output_tokens <= 16 and final.metrics.input_tokens > 10
    assert "<|im_end|>" not in completion.text


async def test_same_answer_as_the_engine_directly(smollm2_torch: ModelRuntimeActor) -> None:
    from workbench.engine import SamplingParams

    engine = smollm2_torch.engine  # type: ignore[attr-defined]
    ids = engine.chat_input_ids([{"role": "user", "content": QUESTION}])
    direct = engine.tokenizer.decode(list(engine.generate(ids, SamplingParams(max_new_tokens=20))))
    completion = await smollm2_torch.chat(QUESTION, options=GREEDY | {"max_tokens": 20})
    assert completion.text == direct


async def test_seeded_sampling_is_reproducible(smollm2_torch: ModelRuntimeActor) -> None:
    sampled = {"temperature": 1.5, "top_p": 0.95, "top_k": 50, "max_tokens": 8}
    first = await smollm2_torch.complete("My favourite animal is", options=sampled | {"seed": 7})
    again = await smollm2_torch.complete("My favourite animal is", options=sampled | {"seed": 7})
    other = await smollm2_torch.complete("My favourite animal is", options=sampled | {"seed": 8})
    assert first.text == again.text
    assert other.text != first.text


async def test_stop_string_is_trimmed(smollm2_torch: ModelRuntimeActor) -> None:
    completion = await smollm2_torch.chat(QUESTION, options=GREEDY | {"max_tokens": 16, "stop": ["Paris"]})
    assert "Paris" not in completion.text
    assert completion.text.strip().startswith("The capital of France")


async def test_cancelling_a_stream_leaves_the_actor_serving(smollm2_torch: ModelRuntimeActor) -> None:
    stream = smollm2_torch.generate("Write a long story about a dragon.", options=GREEDY | {"max_tokens": 400})
    seen = 0
    async for chunk in stream:
        if chunk.text:
            seen += 1
        if seen >= 3:
            break
    await asyncio.sleep(0)
    completion = await smollm2_torch.chat(QUESTION, options=GREEDY | {"max_tokens": 12})
    assert "Paris" in completion.text


async def test_embeddings_are_normalised_and_ordered(smollm2_torch: ModelRuntimeActor) -> None:
    result = await smollm2_torch.embed(["The sea is calm tonight.", "The ocean is quiet this evening.", "x = 1 + 2"])
    assert len(result.vectors) == 3 and result.dimensions == 576 and result.normalized
    a, b, c = result.vectors
    dot = lambda u, v: sum(x * y for x, y in zip(u, v))  # noqa: E731
    assert abs(dot(a, a) - 1.0) < 1e-4
    assert dot(a, b) > dot(a, c)


async def test_images_are_not_supported(smollm2_torch: ModelRuntimeActor) -> None:
    message = ChatMessage(
        role="user",
        content=[ImagePart(image_url=ImageURL(url="data:image/png;base64,AAAA")), TextPart(text="What is this?")],
    )
    with pytest.raises(NotSupported):
        await smollm2_torch.chat([message], options=GREEDY | {"max_tokens": 4})


async def test_stats_report_the_engine(smollm2_torch: ModelRuntimeActor) -> None:
    stats = await smollm2_torch.stats()
    text = stats.model_dump_json()
    assert "q4" in text
    assert 134_000_000 < (stats.model_dump().get("parameters") or 0) < 135_000_000 or "134515008" in text


async def test_think_streams_thinking_apart_from_the_answer(smollm2_torch: ModelRuntimeActor) -> None:
    chunks = [chunk async for chunk in smollm2_torch.think(QUESTION, options={"max_tokens": 40})]
    thinking = "".join(chunk.thinking for chunk in chunks)
    answer = "".join(chunk.text for chunk in chunks)
    assert thinking.strip() and answer.strip()  # SmolLM2 ends inside its thought: we close it, it answers
    assert not any(chunk.thinking and chunk.text for chunk in chunks)
    first_answer = next(index for index, chunk in enumerate(chunks) if chunk.text)
    assert not any(chunk.thinking for chunk in chunks[first_answer:])  # thinking first, then the answer
    assert "<think>" not in thinking + answer and "</think>" not in thinking + answer
    assert chunks[-1].metrics.output_tokens <= 40


async def test_stats_break_the_first_token_down(smollm2_torch: ModelRuntimeActor) -> None:
    """Issue 17: where the time to the first token went, per request (benchmarks/ttft.py prints it)."""
    completion = await smollm2_torch.chat("Name a fruit.", options=GREEDY | {"max_tokens": 4})
    breakdown = (await smollm2_torch.stats()).details["first_token"]
    steps = ("template_s", "tokenize_s", "prefill_s", "first_sample_s", "first_detokenize_s")
    assert all(breakdown[step] >= 0 for step in steps)
    assert breakdown["first_token_at"] > breakdown["started_at"]
    assert sum(breakdown[step] for step in steps) < completion.metrics.ttft_s
    assert 0 < breakdown["reused_tokens"] < breakdown["prompt_tokens"]  # the template's preamble was cached


async def test_each_request_says_how_much_of_its_prompt_was_cached(smollm2_torch: ModelRuntimeActor) -> None:
    """A repeated prompt is answered from the prompt cache; its metrics say so, so a benchmark that
    repeats prompts shows why its TTFT dropped."""
    prompt = "Name a vegetable, please."
    first = await smollm2_torch.chat(prompt, options=GREEDY | {"max_tokens": 3})
    again = await smollm2_torch.chat(prompt, options=GREEDY | {"max_tokens": 3})
    cached = [c.metrics.server["torch_cached_prompt_tokens"] for c in (first, again)]
    assert cached[0] < first.metrics.input_tokens - 1  # only the template's preamble
    assert cached[1] == again.metrics.input_tokens - 1  # all but the last token
