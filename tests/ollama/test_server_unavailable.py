"""A served model whose actor is stopped or FAILED: both APIs answer 503 naming the model and the fix,
in their own error shapes (Ollama's `{"error": "..."}`, OpenAI's `{"error": {"message", "type", ...}}`),
streamed or not, and the server keeps serving the other models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.scripted import ScriptedActor
from workbench.errors import ActorFailed
from workbench.server.app import APIServer


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    stopped, failed, alive = ScriptedActor("halted"), ScriptedActor("missing"), ScriptedActor("echo")
    for actor in (stopped, failed, alive):
        actor.start()
    await stopped.wait_ready()
    await alive.wait_ready()
    await stopped.stop()
    with pytest.raises(ActorFailed):  # its load raises: it answers with errors until restarted
        await failed.wait_ready()
    async with APIServer([stopped, failed, alive], port=0) as running:
        yield running
    for actor in (failed, alive):
        await actor.stop()


OLLAMA_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("/api/chat", {"messages": [{"role": "user", "content": "hi there"}]}),
    ("/api/chat", {"messages": [{"role": "user", "content": "hi there"}], "stream": False}),
    ("/api/generate", {"prompt": "hi there"}),
    ("/api/generate", {"prompt": "hi there", "stream": False}),
    ("/api/embed", {"input": "hi there"}),
]
OPENAI_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi there"}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi there"}], "stream": True}),
    ("/v1/completions", {"prompt": "hi there", "stream": True}),
    ("/v1/embeddings", {"input": "hi there"}),
]


async def _refusals(http: httpx.AsyncClient, model: str, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """Each call to `model` answered 503; their `error` fields, in order."""
    errors = []
    for path, body in calls:
        answer = await http.post(path, json={"model": model, **body})
        assert answer.status_code == 503, (path, body, answer.text)
        errors.append(answer.json()["error"])
    return errors


@pytest.mark.parametrize(("model", "why"), [("halted", "stopped"), ("missing", "failed")])
async def test_ollama_routes_answer_503_naming_the_model(server: APIServer, model: str, why: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for error in await _refusals(http, model, OLLAMA_CALLS):
            assert isinstance(error, str)
            assert f"model '{model}' is not running" in error and why in error and "restart" in error
        assert (await http.post("/api/generate", json={"model": "echo", "prompt": "still up",
                                                       "stream": False})).json()["response"] == "still up"


@pytest.mark.parametrize(("model", "why"), [("halted", "stopped"), ("missing", "failed")])
async def test_openai_routes_answer_503_in_openai_shape(server: APIServer, model: str, why: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for error in await _refusals(http, model, OPENAI_CALLS):
            assert error["type"] == "server_error" and error["code"] == "model_not_running"
            assert f"model '{model}' is not running" in error["message"] and why in error["message"]


def test_workbench_errors_map_to_the_status_that_names_them() -> None:
    from workbench.errors import (
        ModelNotFound,
        PromptTooLong,
        RuntimeHTTPError,
        RuntimeTimeout,
        RuntimeUnreachable,
    )
    from workbench.server.ollama_api import status_for

    assert status_for(PromptTooLong("too long")) == 400
    assert status_for(ModelNotFound("no file")) == 404
    assert status_for(RuntimeUnreachable("ollama", "http://127.0.0.1:1")) == 503
    assert status_for(RuntimeHTTPError(500, "boom", "http://127.0.0.1:1")) == 502
    assert status_for(RuntimeTimeout("slow")) == 504
    assert status_for(RuntimeError("a bug of ours")) == 500


async def test_listings_still_answer_with_a_stopped_and_a_failed_model(server: APIServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        tags = await http.get("/api/tags")
        assert tags.status_code == 200
        assert {m["name"] for m in tags.json()["models"]} == {"halted:latest", "missing:latest", "echo:latest"}
        running = await http.get("/api/ps")
        assert [m["name"] for m in running.json()["models"]] == ["echo:latest"]  # only a running model
        assert (await http.post("/api/show", json={"model": "halted"})).status_code == 200
        assert (await http.get("/v1/models")).status_code == 200


async def test_a_request_cut_short_by_a_stop_answers_503_not_500() -> None:
    import asyncio

    actor = ScriptedActor("slow", delay_s=0.3)
    actor.start()
    await actor.wait_ready()
    async with APIServer([actor], port=0) as running, httpx.AsyncClient(base_url=running.url) as http:
        words = " ".join(["word"] * 20)
        ollama_call = asyncio.create_task(http.post("/api/generate", json={
            "model": "slow", "prompt": words, "stream": False}))
        openai_call = asyncio.create_task(http.post("/v1/completions", json={"model": "slow", "prompt": words}))
        while actor.current is None:
            await asyncio.sleep(0.01)
        await actor.stop(drain=False)  # the running request and the queued one are cancelled
        ollama_answer, openai_answer = await ollama_call, await openai_call
    assert ollama_answer.status_code == 503 and "model 'slow' is not running" in ollama_answer.json()["error"]
    assert openai_answer.status_code == 503 and openai_answer.json()["error"]["code"] == "model_not_running"
