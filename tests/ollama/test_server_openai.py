"""`workbench serve`'s OpenAI API over the fast scripted actors of `scripted_server` (tests/ollama/conftest.py): the exact SSE shapes, thinking, every
refusal in OpenAI's error shape, an error after the stream began, and a client that goes away."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest

from workbench.server.app import APIServer


def _events(text: str) -> list[Any]:
    data = [line[len("data: "):] for line in text.split("\n\n") if line.startswith("data: ")]
    return [item if item == "[DONE]" else json.loads(item) for item in data]


async def test_sse_shapes_with_and_without_usage(scripted_server: APIServer) -> None:
    ask = {"model": "echo", "messages": [{"role": "user", "content": "one two"}], "stream": True}
    async with httpx.AsyncClient(base_url=scripted_server.url) as http:
        plain = await http.post("/v1/chat/completions", json=ask)
        with_usage = await http.post("/v1/chat/completions", json={**ask, "stream_options": {"include_usage": True}})
    assert plain.headers["content-type"].startswith("text/event-stream")
    events = _events(plain.text)
    assert events[-1] == "[DONE]"
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [e["choices"][0]["delta"].get("content") for e in events[1:3]] == ["one", " two"]
    final = events[-2]
    assert final["choices"][0]["finish_reason"] == "stop" and final["choices"][0]["delta"] == {}
    assert "usage" not in final and final["workbench_metrics"]["e2e_s"] > 0
    assert len({e["id"] for e in events[:-1]}) == 1 and final["object"] == "chat.completion.chunk"
    events = _events(with_usage.text)
    assert events[-2]["choices"] == [] and events[-2]["usage"] == {"prompt_tokens": 2, "completion_tokens": 2,
                                                                   "total_tokens": 4}
    assert all(e["usage"] is None for e in events[:-2])


async def test_thinking_streams_in_reasoning_content(scripted_server: APIServer) -> None:
    client = openai.AsyncOpenAI(base_url=f"{scripted_server.url}/v1", api_key="unused")
    stream = await client.chat.completions.create(
        model="thinker", messages=[{"role": "user", "content": "hello there"}], stream=True,
        extra_body={"chat_template_kwargs": {"enable_thinking": True}})
    deltas = [chunk.choices[0].delta async for chunk in stream if chunk.choices]
    thinking = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    answer = "".join(d.content or "" for d in deltas)
    assert thinking == "considering" and answer == "hello there"
    whole = await client.chat.completions.create(model="thinker", messages=[{"role": "user", "content": "hi"}],
                                                 reasoning_effort="low")
    assert whole.choices[0].message.reasoning_content == "considering"  # type: ignore[attr-defined]
    assert (await client.models.retrieve("thinker")).id == "thinker"
    await client.close()


@pytest.mark.parametrize(("path", "body", "status", "words"), [
    ("/v1/chat/completions", {"model": "echo", "messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"model": "echo", "messages": [{"role": "user", "content": "x"}], "n": 2}, 400, "n must be 1"),
    ("/v1/chat/completions", {"model": "echo", "messages": [{"role": "user", "content": "x"}],
                              "tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tools"),
    ("/v1/chat/completions", {"model": "echo", "messages": [{"role": "user", "content": "x"}],
                              "response_format": {"type": "json_object"}}, 400, "constrained decoding"),
    ("/v1/chat/completions", {"model": "embedder", "messages": [{"role": "user", "content": "x"}]}, 400, "chat"),
    ("/v1/chat/completions", {"model": "echo", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}, 400, "data: URL"),
    ("/v1/chat/completions", {"model": "echo", "messages": [{"role": "user", "content": "x"}],
                              "temperature": "hot"}, 400, "temperature"),
    ("/v1/completions", {"model": "echo", "prompt": ["a", "b"]}, 400, "one string"),
    ("/v1/embeddings", {"model": "echo", "input": []}, 400, "empty"),
    ("/v1/embeddings", {"model": "embedder", "input": [1, 2]}, 400, "input"),
    ("/v1/embeddings", {"model": "nope", "input": "x"}, 404, "does not exist"),
])
async def test_refusals_in_openais_shape(scripted_server: APIServer, path: str, body: dict, status: int, words: str) -> None:
    async with httpx.AsyncClient(base_url=scripted_server.url) as http:
        answer = await http.post(path, json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and words in error["message"]


async def test_an_error_after_the_stream_began_is_an_error_event(scripted_server: APIServer) -> None:
    client = openai.AsyncOpenAI(base_url=f"{scripted_server.url}/v1", api_key="unused")
    stream = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "please FAIL now"}], stream=True)
    with pytest.raises(openai.APIError, match="scripted failure"):
        async for _ in stream:
            pass
    assert (await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "fine"}])).choices[0].message.content == "fine"
    await client.close()


async def test_a_client_that_goes_away_cancels_its_generation(scripted_server: APIServer) -> None:
    actor = next(s.actor for s in scripted_server.api.models.values() if s.name == "slowpoke")
    body = {"model": "slowpoke", "messages": [{"role": "user", "content": " ".join("abcdefghijklmnopqrst")}],
            "stream": True}
    async with httpx.AsyncClient(base_url=scripted_server.url) as http:
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            async for _ in response.aiter_lines():
                break  # the first event, then hang up
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.0  # twenty words at 0.2 s would take 4 s
    while str(actor.state) != "idle":
        assert loop.time() < deadline, "the generation went on after the client left"
        await asyncio.sleep(0.02)


async def test_our_openai_runtime_thinks_through_serve(scripted_server: APIServer) -> None:
    from workbench.runtimes.registry import create_actor

    actor = create_actor(f"openai:thinker@{scripted_server.url}/v1")
    actor.start()
    await actor.wait_ready()
    try:
        done = await actor.think("hello there")
        assert done.thinking == "considering" and done.text == "hello there"
        plain = await actor.chat("hello there")
        assert plain.thinking == "" and plain.text == "hello there"
        assert plain.metrics.output_tokens == 2 and plain.metrics.server["served_e2e_s"] > 0
    finally:
        await actor.stop()
