"""`TransformersRuntimeActor` on the real embedded models (loaded once per session, tests/conftest.py),
and on a tiny randomly initialised vision-language model built here from a config."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import torch

from workbench.actors.actor import ActorFailed
from workbench.errors import NotSupported
from workbench.runtimes.base import ModelRuntimeActor
from workbench.runtimes.transformers import TransformersRuntimeActor
from workbench.runtimes.types import ChatMessage, ImagePart, ImageURL, TextPart, encode_data_url

QUESTION = "What is the capital of France?"
GREEDY = {"temperature": 0.0}
COUNTING = "Count from 1 to 20, separated by commas."


def _png(color: tuple[int, int, int], noise: bool = False) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (40, 30), color)
    if noise:
        image = Image.effect_noise((40, 30), 80).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ----- answers ---------------------------------------------------------------------------------------
async def test_chat_answers_paris_and_streaming_equals_the_complete_form(
    smollm2_transformers: ModelRuntimeActor,
) -> None:
    options = GREEDY | {"max_tokens": 12}
    chunks = [chunk async for chunk in smollm2_transformers.chat(QUESTION, options=options)]
    completion = await smollm2_transformers.chat(QUESTION, options=options)
    assert "Paris" in completion.text
    assert "".join(chunk.text for chunk in chunks) == completion.text
    assert len([chunk for chunk in chunks if chunk.text]) > 3  # streamed token by token, not in one piece
    final = chunks[-1]
    assert final.done and final.metrics is not None
    assert final.metrics.output_tokens == completion.metrics.output_tokens
    assert 0 < final.metrics.output_tokens <= 12 and final.metrics.input_tokens > 10
    assert "<|im_end|>" not in completion.text  # special tokens never shown


async def test_a_seed_makes_sampling_reproducible(smollm2_transformers: ModelRuntimeActor) -> None:
    """(Greedy reproducibility: the Paris test above runs the same greedy request twice.)"""
    sampled = {"temperature": 1.5, "top_p": 0.95, "top_k": 50, "max_tokens": 6}
    first = await smollm2_transformers.complete("My favourite animal is", options=sampled | {"seed": 7})
    again = await smollm2_transformers.complete("My favourite animal is", options=sampled | {"seed": 7})
    other = await smollm2_transformers.complete("My favourite animal is", options=sampled | {"seed": 8})
    assert first.text == again.text
    assert other.text != first.text


async def test_complete_continues_plain_text(smollm2_transformers: ModelRuntimeActor) -> None:
    completion = await smollm2_transformers.complete("The capital of France is", options=GREEDY | {"max_tokens": 4})
    assert "Paris" in completion.text
    assert completion.metrics.input_tokens == 5  # no chat template around the prompt


async def test_stop_strings_cut_the_answer_where_they_begin(smollm2_transformers: ModelRuntimeActor) -> None:
    full = await smollm2_transformers.generate(COUNTING, options=GREEDY | {"max_tokens": 10})
    assert "\n2" in full.text
    stopped = await smollm2_transformers.generate(COUNTING, options=GREEDY | {"max_tokens": 10, "stop": ["\n2"]})
    assert stopped.text == full.text[: full.text.index("\n2")]
    assert stopped.finish_reason == "stop"


async def test_max_tokens_bounds_the_answer(smollm2_transformers: ModelRuntimeActor) -> None:
    completion = await smollm2_transformers.generate(COUNTING, options=GREEDY | {"max_tokens": 5})
    assert completion.metrics.output_tokens == 5
    assert completion.finish_reason == "length"


async def test_system_prompt_is_applied(smollm2_transformers: ModelRuntimeActor) -> None:
    plain = await smollm2_transformers.generate("Who are you?", options=GREEDY | {"max_tokens": 6})
    pirate = await smollm2_transformers.generate(
        "Who are you?", system="You are a pirate named Blackbeard.", options=GREEDY | {"max_tokens": 6})
    assert pirate.metrics.input_tokens != plain.metrics.input_tokens
    assert pirate.text != plain.text


async def test_cancel_stops_within_one_token_and_the_actor_serves_on(
    smollm2_transformers: TransformersRuntimeActor,
) -> None:
    forwards: list[int] = []
    handle = smollm2_transformers.loaded.model.register_forward_hook(lambda *args: forwards.append(1))
    try:
        reply = smollm2_transformers.generate("Write a long story about a dragon.", options={"max_tokens": 200})
        seen = 0
        async for chunk in reply:
            seen += bool(chunk.text)
            if seen == 3:
                reply.cancel()
                at_cancel = len(forwards)
                break
        after = await smollm2_transformers.chat(QUESTION, options=GREEDY | {"max_tokens": 1})
        # the next request needs exactly one forward pass (its prompt); the cancelled one at most one more
        assert len(forwards) - at_cancel - 1 <= 1
        assert after.text and after.metrics.output_tokens == 1
    finally:
        handle.remove()


async def test_think_streams_thinking_apart_from_the_answer(smollm2_transformers: ModelRuntimeActor) -> None:
    chunks = [chunk async for chunk in smollm2_transformers.think(QUESTION, options={"max_tokens": 40})]
    thinking = "".join(chunk.thinking for chunk in chunks)
    answer = "".join(chunk.text for chunk in chunks)
    assert thinking.strip() and answer.strip()  # SmolLM2 ends inside its thought: we close it, it answers
    first_answer = next(index for index, chunk in enumerate(chunks) if chunk.text)
    assert not any(chunk.thinking for chunk in chunks[first_answer:])  # thinking first, then the answer
    assert not any(chunk.thinking and chunk.text for chunk in chunks)
    assert "<think>" not in thinking + answer and "</think>" not in thinking + answer
    assert chunks[-1].metrics.output_tokens <= 40
    assert "<think>" in smollm2_transformers.capabilities.notes["think"]


async def test_summarize_text(smollm2_transformers: ModelRuntimeActor) -> None:
    text = ("The Eiffel Tower is a wrought-iron lattice tower in Paris, France. It was built for the 1889 "
            "World's Fair and is 330 metres tall.")
    summary = await smollm2_transformers.summarize_text(text, options=GREEDY | {"max_tokens": 12})
    assert "Eiffel" in summary.text or "Paris" in summary.text


async def test_stats_report_the_model_and_the_last_request(smollm2_transformers: ModelRuntimeActor) -> None:
    await smollm2_transformers.chat(QUESTION, options=GREEDY | {"max_tokens": 2})
    stats = await smollm2_transformers.stats()
    assert stats.runtime == "transformers" and stats.model == "smollm2"
    assert stats.parameters == 134_515_008 and stats.dtype == "float32" and stats.device == "cpu"
    assert stats.memory_bytes == 134_515_008 * 4  # float32 weights (tied embeddings counted once)
    assert stats.threads == smollm2_transformers.threads == stats.details["torch_threads"]
    assert stats.load_time_s and stats.load_time_s > 0
    assert stats.last_request is not None and stats.last_request.output_tokens == 2


# ----- embeddings -------------------------------------------------------------------------------------
async def test_minilm_embeds_a_batch_normalised_with_similar_sentences_closer(minilm: ModelRuntimeActor) -> None:
    result = await minilm.embed(["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell today."])
    vectors = torch.tensor(result.vectors)
    assert vectors.shape == (3, 384) and result.normalized
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-4)
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > unrelated + 0.3
    assert "mean-pooled" in result.method
    assert result.metrics is not None and result.metrics.input_tokens > 10


async def test_embedding_model_cannot_chat(minilm: ModelRuntimeActor) -> None:
    with pytest.raises(NotSupported, match="embedding model"):
        minilm.chat("hello")
    assert not minilm.capabilities.chat and minilm.capabilities.embed


async def test_causal_lm_embeddings_are_labelled(smollm2_transformers: ModelRuntimeActor) -> None:
    result = await smollm2_transformers.embed(["short", "a somewhat longer sentence to pad the batch"])
    assert result.dimensions == 576 and result.method == "mean-pooled hidden states (causal LM)"
    assert torch.allclose(torch.tensor(result.vectors).norm(dim=1), torch.ones(2), atol=1e-4)


# ----- images -----------------------------------------------------------------------------------------
async def test_text_only_model_refuses_images(smollm2_transformers: ModelRuntimeActor) -> None:
    assert not smollm2_transformers.capabilities.summarize_image
    with pytest.raises(NotSupported, match="text-only"):
        smollm2_transformers.summarize_image(_png((255, 0, 0)))
    message = ChatMessage(role="user", content=[
        TextPart(text="What is this?"), ImagePart(image_url=ImageURL(url=encode_data_url(_png((0, 0, 255)))))])
    with pytest.raises(NotSupported, match="text-only"):
        await smollm2_transformers.chat([message])
    assert "Paris" in (await smollm2_transformers.chat(QUESTION, options=GREEDY | {"max_tokens": 12})).text


@pytest.fixture(scope="module")
def tiny_vlm(smollm2_transformers: TransformersRuntimeActor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised LLaVA (tiny CLIP tower + tiny Llama) with SmolLM2's tokenizer, saved to disk."""
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tokenizer = smollm2_transformers.loaded.tokenizer.__class__.from_pretrained(
        smollm2_transformers.loaded.model.name_or_path)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=32)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, vision_feature_layer=-1,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
                "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
                "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="full", chat_template=template,
        num_additional_image_tokens=0)
    folder = tmp_path_factory.mktemp("tiny-llava")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
async def vlm_actor(tiny_vlm: Path) -> AsyncIterator[TransformersRuntimeActor]:
    actor = TransformersRuntimeActor(str(tiny_vlm), threads=1)
    actor.start()
    await actor.wait_ready()
    yield actor
    await actor.stop()


async def test_summarize_image_runs_the_vision_pipeline(vlm_actor: TransformersRuntimeActor) -> None:
    assert vlm_actor.capabilities.summarize_image and vlm_actor.loaded.kind == "vision-lm"
    red = await vlm_actor.summarize_image(_png((255, 0, 0)), options={"max_tokens": 6})
    noise = await vlm_actor.summarize_image(_png((0, 0, 0), noise=True), options={"max_tokens": 6})
    text_only = await vlm_actor.generate("Describe this image.", options={"max_tokens": 6})
    assert red.metrics.output_tokens == 6 and red.text
    # 32x32 pixels in 8x8 patches: the prompt carries 16 image tokens the text-only prompt lacks
    assert red.metrics.input_tokens >= text_only.metrics.input_tokens + 16
    assert red.text != noise.text  # the pixels reach the model


async def test_generate_takes_images_on_a_vision_model(vlm_actor: TransformersRuntimeActor) -> None:
    completion = await vlm_actor.generate("What is this?", images=[_png((0, 255, 0))], options={"max_tokens": 3})
    assert completion.metrics.output_tokens == 3


# ----- lifecycle --------------------------------------------------------------------------------------
async def test_a_preloaded_model_is_shared_and_survives_the_other_actor(
    smollm2_transformers: TransformersRuntimeActor,
) -> None:
    twin = TransformersRuntimeActor("smollm2", preloaded=smollm2_transformers.loaded, threads=1)
    twin.start()
    await twin.wait_ready()
    assert twin.loaded is smollm2_transformers.loaded
    options = GREEDY | {"max_tokens": 8}
    assert (await twin.chat(QUESTION, options=options)).text == (
        await smollm2_transformers.chat(QUESTION, options=options)).text
    assert (await twin.stats()).details["shared"] is True
    await twin.stop()
    assert twin.loaded is None
    assert "Paris" in (await smollm2_transformers.chat(QUESTION, options=options)).text


async def test_not_enough_memory_fails_the_start_with_both_figures() -> None:
    actor = TransformersRuntimeActor("smollm2", available_memory=64 * 2**20)
    actor.start()
    with pytest.raises(ActorFailed, match=r"needs about .* GiB .* only 0.06 GiB is available"):
        await actor.wait_ready()
    await actor.stop()


async def test_the_model_is_freed_on_stop() -> None:
    import gc
    import weakref

    actor = TransformersRuntimeActor("minilm", threads=1)
    actor.start()
    await actor.wait_ready()
    assert (await actor.stats()).details["source"] == "folder"
    model = weakref.ref(actor.loaded.model)
    await actor.stop()
    gc.collect()
    assert model() is None


async def test_an_undecodable_image_is_a_clear_error_and_the_actor_serves_on(
    vlm_actor: TransformersRuntimeActor,
) -> None:
    with pytest.raises(ValueError, match="image 1 cannot be decoded"):
        await vlm_actor.summarize_image(b"\x89PNG not really a png", options={"max_tokens": 2})
    assert (await vlm_actor.summarize_image(_png((9, 9, 9)), options={"max_tokens": 2})).metrics.output_tokens == 2
