"""`workbench serve`'s Ollama API, seen by the official `ollama` client and by raw HTTP."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import ollama
import pytest

from workbench.server.ollama_api import OllamaAPIServer, rfc3339_nano

RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


async def test_async_client_chat_streaming_and_not(scripted_server: OllamaAPIServer) -> None:
    client = ollama.AsyncClient(host=scripted_server.url)
    whole = await client.chat(model="echo", messages=[{"role": "user", "content": "the quick brown fox"}])
    assert whole.message.content == "the quick brown fox"
    assert whole.done and whole.done_reason == "stop"
    assert whole.eval_count == 4 and whole.prompt_eval_count == 4
    assert whole.total_duration >= whole.eval_duration > 0
    assert RFC3339_NANO.match(whole.created_at)

    parts = [part async for part in await client.chat(
        model="echo:latest", messages=[{"role": "user", "content": "one two three"}], stream=True)]
    assert [p.message.content for p in parts[:-1]] == ["one", " two", " three"]
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    await client._client.aclose()


async def test_async_client_generate_with_thinking(scripted_server: OllamaAPIServer) -> None:
    client = ollama.AsyncClient(host=scripted_server.url)
    parts = [p async for p in await client.generate(model="thinker", prompt="hello there", think=True, stream=True)]
    thinking = "".join(p.thinking or "" for p in parts)
    answer = "".join(p.response or "" for p in parts)
    assert thinking.startswith("Let me think.") and answer == "hello there"
    first_answer = next(i for i, p in enumerate(parts) if p.response)
    assert all(not p.thinking for p in parts[first_answer:])
    await client._client.aclose()


async def test_sync_client_streaming_and_not(scripted_server: OllamaAPIServer) -> None:
    def use_sync_client() -> tuple[str, list[str], list[list[float]]]:
        client = ollama.Client(host=scripted_server.url)
        whole = client.generate(model="echo", prompt="alpha beta")
        streamed = [p.message.content for p in client.chat(
            model="echo", messages=[{"role": "user", "content": "gamma delta"}], stream=True)]
        vectors = client.embed(model="embedder", input=["a b", "c"]).embeddings
        client.close()
        return whole.response, streamed, vectors

    response, streamed, vectors = await asyncio.to_thread(use_sync_client)
    assert response == "alpha beta"
    assert "".join(streamed) == "gamma delta"
    assert len(vectors) == 2
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-9 for v in vectors)  # /api/embed normalises


async def test_listing_endpoints(scripted_server: OllamaAPIServer) -> None:
    client = ollama.AsyncClient(host=scripted_server.url)
    names = {m.model for m in (await client.list()).models}
    assert {"echo:latest", "thinker:latest", "embedder:latest"} <= names
    running = {m.name for m in (await client.ps()).models}
    assert "echo:latest" in running
    show = await client.show("embedder")
    assert show.capabilities == ["embedding"]
    assert "completion" in (await client.show("thinker")).capabilities
    await client._client.aclose()


async def test_raw_shapes_and_errors(scripted_server: OllamaAPIServer) -> None:
    async with httpx.AsyncClient(base_url=scripted_server.url) as http:
        root = await http.get("/")
        assert root.status_code == 200 and root.text == "Ollama is running"
        assert (await http.get("/api/version")).json()["version"]

        streamed = await http.post("/api/generate", json={"model": "echo", "prompt": "x y"})
        assert streamed.headers["content-type"] == "application/x-ndjson"  # stream defaults to true
        assert streamed.headers.get("transfer-encoding") == "chunked"
        lines = [json.loads(line) for line in streamed.text.splitlines()]
        assert [line["done"] for line in lines] == [False, False, True]
        assert set(lines[-1]) >= {"model", "created_at", "response", "done", "done_reason", "total_duration",
                                  "eval_count", "eval_duration", "prompt_eval_count", "prompt_eval_duration"}

        missing = await http.post("/api/chat", json={"model": "nope", "messages": []})
        assert missing.status_code == 404 and missing.json() == {"error": "model 'nope' not found"}
        bad = await http.post("/api/chat", content=b"{not json")
        assert bad.status_code == 400 and "invalid JSON" in bad.json()["error"]
        no_model = await http.post("/api/generate", json={"prompt": "x"})
        assert no_model.status_code == 400 and no_model.json() == {"error": "model is required"}
        wrong_role = await http.post("/api/chat", json={"model": "echo", "messages": [{"role": "robot", "content": "x"}]})
        assert wrong_role.status_code == 400 and "role" in wrong_role.json()["error"]
        no_chat = await http.post("/api/chat", json={"model": "embedder", "messages": [{"role": "user", "content": "x"}]})
        assert no_chat.status_code == 400 and "does not support chat" in no_chat.json()["error"]
        no_think = await http.post("/api/generate", json={"model": "embedder", "prompt": "x", "think": True})
        assert no_think.status_code == 400
        assert (await http.get("/api/nothing")).status_code == 404
        assert (await http.get("/api/chat")).status_code == 405

        load = await http.post("/api/chat", json={"model": "echo", "messages": [], "stream": False})
        assert load.json()["done_reason"] == "load" and load.json()["done"] is True
        legacy = await http.post("/api/embeddings", json={"model": "embedder", "prompt": "a b c"})
        assert legacy.json() == {"embedding": [5.0, 3.0, 1.0]}  # as the model gives it, not normalised


async def test_error_after_the_stream_began_is_an_error_line(scripted_server: OllamaAPIServer) -> None:
    async with httpx.AsyncClient(base_url=scripted_server.url) as http:
        answer = await http.post("/api/chat", json={"model": "echo", "messages": [{"role": "user", "content": "a FAIL b"}]})
        lines = [json.loads(line) for line in answer.text.splitlines()]
        assert answer.status_code == 200
        assert lines[0]["message"]["content"] == "a"
        assert "scripted failure" in lines[-1]["error"]
        # the actor serves its next request
        again = await http.post("/api/chat", json={"model": "echo", "messages": [{"role": "user", "content": "fine"}],
                                                   "stream": False})
        assert again.json()["message"]["content"] == "fine"


async def test_keep_alive_serves_many_requests_on_one_connection(scripted_server: OllamaAPIServer) -> None:
    async with httpx.AsyncClient(base_url=scripted_server.url, limits=httpx.Limits(max_connections=1)) as http:
        before = scripted_server.http.accepted
        for _ in range(3):
            answer = await http.post("/api/generate", json={"model": "echo", "prompt": "k a"})
            assert answer.text.count("\n") == 3
        assert scripted_server.http.accepted - before == 1


async def test_client_disconnect_cancels_the_generation(scripted_server: OllamaAPIServer) -> None:
    actor = scripted_server.api.models["slowpoke:latest"].actor
    cancelled: list[str] = []
    actor.on("cancelled", lambda event: cancelled.append(event.correlation_id))
    async with httpx.AsyncClient(base_url=scripted_server.url) as http:
        prompt = " ".join(["word"] * 50)  # 50 words x 0.2 s: ten seconds if nobody cancels
        async with http.stream("POST", "/api/generate", json={"model": "slowpoke", "prompt": prompt}) as response:
            async for _line in response.aiter_lines():
                break  # the first token arrived; hang up
    for _ in range(100):
        if cancelled and str(actor.state) == "idle":
            break
        await asyncio.sleep(0.05)
    assert cancelled, "the server kept generating for a client that had gone"
    assert str(actor.state) == "idle"


def test_created_at_is_rfc3339_with_nanoseconds() -> None:
    assert rfc3339_nano(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert rfc3339_nano(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert rfc3339_nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"


def test_two_actors_may_not_serve_one_name() -> None:
    from tests.support.scripted import ScriptedActor

    with pytest.raises(ValueError, match="both serve"):
        OllamaAPIServer([ScriptedActor("same"), ScriptedActor("same:latest")])


async def test_parameters_are_defaults_that_requests_override() -> None:
    from tests.ollama.support import Recording

    actor = Recording("rec")
    async with OllamaAPIServer([actor], port=0, parameters={"num_predict": 24, "temperature": 0}) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            await http.post("/api/generate", json={"model": "rec", "prompt": "a", "stream": False})
            assert (actor.last_options.max_tokens, actor.last_options.temperature) == (24, 0.0)
            await http.post("/api/generate", json={"model": "rec", "prompt": "a", "stream": False,
                                                   "options": {"temperature": 0.7, "num_ctx": 512}})
            options = actor.last_options
            assert (options.max_tokens, options.temperature, options.extra) == (24, 0.7, {"num_ctx": 512})
            bad = await http.post("/api/generate", json={"model": "rec", "prompt": "a", "options": {"top_p": 7}})
            assert bad.status_code == 400 and "top_p" in bad.json()["error"]
    await actor.stop()
