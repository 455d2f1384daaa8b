"""The `openai` runtime against a loopback server replaying llama.cpp's and vLLM's documented streams,
and every fault: each gives a clear error and the actor serves its next message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.openai.support import TIMINGS, ReplayServer
from workbench.actors import events
from workbench.errors import (
    ModelNotFound,
    RuntimeHTTPError,
    RuntimeProtocolError,
    RuntimeTimeout,
    RuntimeUnreachable,
    WorkbenchError,
)
from workbench.runtimes.base import ModelRuntimeActor
from workbench.runtimes.openai import OpenAIRuntimeActor, key_variable
from workbench.runtimes.registry import create_actor


async def _started(spec: str, **options: Any) -> ModelRuntimeActor:
    actor = create_actor(spec, **options)
    actor.start()
    await actor.wait_ready()
    return actor


@pytest.fixture
async def actor(replay: ReplayServer) -> AsyncIterator[ModelRuntimeActor]:
    """One actor for all shapes: the model is chosen per request through `actor.model`."""
    started = await _started(f"openai:llamacpp@{replay.url}", timeout=1.0)
    yield started
    await started.stop()


async def _chat(actor: ModelRuntimeActor, model: str, **kwargs: Any) -> Any:
    actor.model = model
    return await actor.chat("hi", **kwargs)


async def test_llamacpp_usage_chunk_and_timings(actor: ModelRuntimeActor, replay: ReplayServer) -> None:
    done = await _chat(actor, "llamacpp")
    assert done.text == "Hello there" and done.finish_reason == "stop"
    metrics = done.metrics
    assert metrics.input_tokens == 12 and metrics.output_tokens == 3
    assert metrics.ttft_s is not None and len(metrics.itl_s) == 2
    assert metrics.server["llamacpp_prompt_ms"] == TIMINGS["prompt_ms"]
    assert metrics.server["llamacpp_predicted_per_second"] == TIMINGS["predicted_per_second"]
    assert "openai_tokens_counted_from_chunks" not in metrics.server
    sent = replay.requests[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["messages"] == [{"role": "user", "content": "hi"}]


async def test_older_llamacpp_usage_on_the_stop_chunk(actor: ModelRuntimeActor) -> None:
    done = await _chat(actor, "llamacpp-old")
    assert done.text == "Hello there"
    assert done.metrics.input_tokens == 12 and done.metrics.output_tokens == 3
    assert done.metrics.server["llamacpp_predicted_n"] == 3


async def test_vllm_reasoning_content_kept_apart(actor: ModelRuntimeActor, replay: ReplayServer) -> None:
    actor.model = "vllm"
    chunks = [chunk async for chunk in actor.think("why?")]
    thinking = "".join(chunk.thinking for chunk in chunks)
    answer = "".join(chunk.text for chunk in chunks)
    assert thinking == "Thinking." and answer == "Hello there"
    first_answer = next(i for i, chunk in enumerate(chunks) if chunk.text)
    assert all(not chunk.thinking for chunk in chunks[first_answer:])
    final = chunks[-1].metrics
    assert final.output_tokens == 5 and final.server["openai_cached_prompt_tokens"] == 4
    assert replay.requests[-1]["chat_template_kwargs"] == {"enable_thinking": True}
    await actor.chat("x", options={"think": "high"})
    assert replay.requests[-1]["reasoning_effort"] == "high"


async def test_vllm_per_request_metrics_are_asked_for_and_labelled(replay: ReplayServer) -> None:
    replay.models = ["llamacpp", "vllm"]
    try:
        actor = await _started(f"openai:vllm@{replay.url}")
    finally:
        replay.models = ["llamacpp"]
    done = await actor.chat("hi")
    assert replay.requests[-1]["include_metrics"] is True
    assert done.metrics.server["vllm_time_to_first_token_ms"] == 85.2
    assert done.metrics.server["vllm_tokens_per_second"] == 103.2
    assert done.metrics.ttft_s is not None  # ours, measured here; the server's stay labelled apart
    assert all(key.startswith(("vllm_", "openai_")) for key in done.metrics.server)
    await actor.stop()
    llama = await _started(f"openai:llamacpp@{replay.url}")
    await llama.chat("hi")
    assert "include_metrics" not in replay.requests[-1]  # only a vLLM server is sent it
    await llama.stop()


def test_thinking_is_asked_for_as_each_server_takes_it() -> None:
    from workbench.runtimes.openai import _thinking
    from workbench.runtimes.types import GenerationOptions

    local = "http://127.0.0.1:8080/v1"
    assert _thinking(GenerationOptions(think=True), local) == {"chat_template_kwargs": {"enable_thinking": True}}
    assert _thinking(GenerationOptions(think=False), local) == {"chat_template_kwargs": {"enable_thinking": False}}
    assert _thinking(GenerationOptions(think="low"), local) == {"reasoning_effort": "low"}
    assert _thinking(GenerationOptions(), local) == {}
    official = "https://api.openai.com/v1"
    assert _thinking(GenerationOptions(think=True), official) == {"reasoning_effort": "medium"}
    assert _thinking(GenerationOptions(think=False), official) == {}


async def test_no_usage_counts_chunks_and_says_so(actor: ModelRuntimeActor) -> None:
    done = await _chat(actor, "nousage")
    assert done.metrics.output_tokens == 3 and done.metrics.input_tokens is None
    assert done.metrics.server["openai_tokens_counted_from_chunks"] == 3


async def test_think_tags_in_content_fall_back_to_the_splitter(actor: ModelRuntimeActor) -> None:
    actor.model = "thinktags"
    done = await actor.think("why?")
    assert done.thinking == "pondering" and done.text == "Hello"


async def test_complete_uses_completions_and_embed_sends_one_batch(actor: ModelRuntimeActor,
                                                                   replay: ReplayServer) -> None:
    actor.model = "llamacpp"
    done = await actor.complete("Once upon")
    assert done.text == "Hello there" and done.metrics.output_tokens == 3
    assert replay.requests[-1]["prompt"] == "Once upon"
    result = await actor.embed(["a", "b", "c"])
    assert replay.requests[-1]["input"] == ["a", "b", "c"]
    assert result.vectors == [[0.6, 0.8, 0.0]] * 3 and result.normalized
    assert result.metrics.input_tokens == 7


async def test_generate_with_system_goes_through_chat(actor: ModelRuntimeActor, replay: ReplayServer) -> None:
    actor.model = "llamacpp"
    await actor.generate("hello", system="be brief", options={"max_tokens": 5, "temperature": 0})
    sent = replay.requests[-1]
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    assert sent["max_tokens"] == 5 and sent["temperature"] == 0


@pytest.mark.parametrize(("model", "error", "words"), [
    ("missing", ModelNotFound, "model 'missing' not found"),
    ("broken", RuntimeHTTPError, "llama_decode failed"),
    ("busy", RuntimeHTTPError, "rate limiting"),
    ("loading", RuntimeHTTPError, "HTTP 503.*still loading its model"),
    ("killed", RuntimeProtocolError, "closed the connection"),
    ("truncated", RuntimeProtocolError, "no finish_reason"),
    ("malformed", RuntimeProtocolError, "malformed line"),
    ("midstream", WorkbenchError, "out of memory"),
    ("slow", RuntimeTimeout, "did not answer in time"),
])
async def test_faults_are_clear_and_the_actor_goes_on(actor: ModelRuntimeActor, model: str,
                                                      error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        await _chat(actor, model)
    assert (await _chat(actor, "llamacpp")).text == "Hello there"
    assert str(actor.state) == "idle"


async def test_connection_refused_is_clear() -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    actor = await _started(f"openai:m@http://127.0.0.1:{port}/v1")
    with pytest.raises(RuntimeUnreachable, match=f"not reachable at http://127.0.0.1:{port}/v1"):
        await actor.chat("hi")
    await actor.stop()


async def test_model_dash_takes_the_only_model_and_refuses_a_choice(replay: ReplayServer) -> None:
    only = await _started(f"openai:@{replay.url}")
    assert only.model == "llamacpp"
    stats = await only.stats()
    assert stats.details["server_reported_model_bytes"] == 270898368 and stats.parameters == 134515008
    assert stats.memory_bytes and stats.memory_bytes > 0  # the local listener: this test process
    assert await only.server_version() == "llama.cpp b6497-cd08fc3e"
    await only.stop()
    replay.models = ["a", "b"]
    try:
        many = create_actor(f"openai:-@{replay.url}")
        many.start()
        with pytest.raises(WorkbenchError, match="lists 2 models"):
            await many.wait_ready()
        await many.stop()
    finally:
        replay.models = ["llamacpp"]


async def test_an_actor_made_as_dash_is_labelled_with_the_model_it_resolved(replay: ReplayServer) -> None:
    actor = create_actor(f"openai:-@{replay.url}")
    assert actor.label == "openai:-"
    actor.start()
    await actor.wait_ready()
    assert actor.label == "openai:llamacpp" and actor.spec == f"openai:llamacpp@{replay.url}"
    assert actor.name == "openai:-"  # the key the supervisor, stream log and sampler hold stays put
    named = create_actor(f"openai:-@{replay.url}", name="mine")
    named.start()
    await named.wait_ready()
    assert named.label == "mine"  # a name given is kept
    await actor.stop()
    await named.stop()


async def test_api_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    server = ReplayServer(api_key="sk-test-123")
    await server.start()
    try:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        variable = key_variable(server.url)
        assert variable == f"WORKBENCH_OPENAI_KEY_127_0_0_1_{server.port}"
        without = await _started(f"openai:llamacpp@{server.url}")
        with pytest.raises(RuntimeHTTPError, match=f"HTTP 401.*Invalid API Key.*{variable}"):
            await without.chat("hi")
        await without.stop()
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
        shared = await _started(f"openai:llamacpp@{server.url}")
        assert (await shared.chat("hi")).text == "Hello there"
        await shared.stop()
        monkeypatch.setenv("OPENAI_API_KEY", "wrong")
        monkeypatch.setenv(variable, "sk-test-123")  # the per-host key wins
        per_host = await _started(f"openai:llamacpp@{server.url}")
        assert (await per_host.chat("hi")).text == "Hello there"
        assert server.headers_seen[-1]["authorization"] == "Bearer sk-test-123"
        assert (await per_host.stats()).details["api_key_from"] == variable
        await per_host.stop()
    finally:
        await server.close()


async def test_llamacpp_loading_is_shown_as_loading(replay: ReplayServer) -> None:
    replay.loading_polls = 1
    availability = await OpenAIRuntimeActor.availability(replay.url)
    assert availability.available and "loading its model" in availability.reason
    replay.loading_polls = 3
    actor = create_actor(f"openai:llamacpp@{replay.url}")
    actor.poll_s = 0.01  # type: ignore[misc]
    progress: list[Any] = []
    actor.on(events.PROGRESS, lambda event: progress.append(event.data))
    actor.start()
    await actor.wait_ready()
    assert str(actor.state) == "idle" and replay.loading_polls == 0
    assert progress and "Loading model" in progress[0][1]
    assert (await actor.chat("hi")).text == "Hello there"
    await actor.stop()
    ready = await OpenAIRuntimeActor.availability(replay.url)
    assert ready.available and "answers at" in ready.reason


async def test_summarize_image_sends_image_url_parts(actor: ModelRuntimeActor, replay: ReplayServer) -> None:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buffer, format="PNG")
    actor.model = "llamacpp"
    done = await actor.summarize_image(buffer.getvalue())
    assert done.text == "Hello there"
    parts = replay.requests[-1]["messages"][0]["content"]
    assert parts[0]["type"] == "text" and parts[1]["type"] == "image_url"
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")


async def test_a_model_that_reads_no_images_says_so(replay: ReplayServer) -> None:
    from workbench.errors import NotSupported

    replay.models = ["textonly"]
    try:
        actor = await _started(f"openai:-@{replay.url}")
    finally:
        replay.models = ["llamacpp"]
    assert not actor.capabilities.summarize_image
    with pytest.raises(NotSupported, match="reads no images"):
        actor.summarize_image(b"\x89PNG\r\n")
    await actor.stop()
