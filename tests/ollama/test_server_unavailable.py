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


@pytest.mark.parametrize(("model", "why"), [("halted", "stopped"), ("missing", "failed")])
async def test_ollama_routes_answer_503_naming_the_model(server: APIServer, model: str, why: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for path, body in OLLAMA_CALLS:
            answer = await http.post(path, json={"model": model, **body})
            assert answer.status_code == 503, (path, body, answer.text)
            error = answer.json()["error"]
            assert isinstance(error, str)
            assert f"model '{model}' is not running" in error and why in error and "restart" in error
        assert (await http.post("/api/generate", json={"model": "echo", "prompt": "still up",
                                                       "stream": False})).json()["response"] == "still up"


@pytest.mark.parametrize(("model", "why"), [("halted", "stopped"), ("missing", "failed")])
async def test_openai_routes_answer_503_in_openai_shape(server: APIServer, model: str, why: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for path, body in OPENAI_CALLS:
            answer = await http.post(path, json={"model": model, **body})
            assert answer.status_code == 503, (path, body, answer.text)
            error = answer.json()["error"]
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
