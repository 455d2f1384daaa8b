"""`workbench serve`'s OpenAI API on the real embedded models, seen by the official `openai` client
(sync and async, streamed and not, embeddings, an unknown model) and by our own `openai` runtime end to
end, including a benchmark whose run file carries the server's figures and no API key.

The models are the session's shared actors (tests/conftest.py), loaded once; answers are short and greedy."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from workbench.bench.runner import run_benchmark
from workbench.runtimes.base import ModelRuntimeActor
from workbench.runtimes.registry import create_actor
from workbench.server.app import APIServer
from workbench.sessions.schema import BenchmarkConfig, BenchmarkPrompt
from workbench.sessions.store import save_benchmark

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
SECRET = "sk-workbench-test-0123456789abcdef"


@pytest.fixture(scope="session")
async def openai_server(smollm2_transformers: ModelRuntimeActor, minilm: ModelRuntimeActor) -> AsyncIterator[APIServer]:
    server = APIServer([smollm2_transformers, minilm], port=0)
    await server.start()
    yield server
    await server.close()


async def test_async_client_streamed_and_not(openai_server: APIServer) -> None:
    client = openai.AsyncOpenAI(base_url=f"{openai_server.url}/v1", api_key="unused")
    whole = await client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=8, temperature=0)
    text = whole.choices[0].message.content
    assert text and "Paris" in text
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert 0 < whole.usage.completion_tokens <= 8 and whole.usage.prompt_tokens > 5

    stream = await client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=8, temperature=0,
                                                  stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text  # greedy: the same
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason

    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(model="nope", messages=QUESTION)
    assert missing.value.status_code == 404 and missing.value.code == "model_not_found"
    assert "nope" in missing.value.body["message"]
    await client.close()


async def test_sync_client_completions_and_embeddings(openai_server: APIServer) -> None:
    def use_sync_client() -> tuple[str, str, list[list[float]], list[float], int]:
        client = openai.OpenAI(base_url=f"{openai_server.url}/v1", api_key="unused")
        whole = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=4,
                                          temperature=0)
        streamed = "".join(c.choices[0].text for c in client.completions.create(
            model="smollm2", prompt="The capital of France is", max_tokens=4, temperature=0, stream=True))
        floats = client.embeddings.create(model="minilm", input=["a cat", "a dog"], encoding_format="float")
        packed = client.embeddings.create(model="minilm", input="a cat")  # the client's default: base64
        try:
            client.embeddings.create(model="nope", input="x")
            status = 0
        except openai.NotFoundError as error:
            status = error.status_code
        client.close()
        return whole.choices[0].text, streamed, [d.embedding for d in floats.data], packed.data[0].embedding, status

    whole, streamed, vectors, packed, status = await asyncio.to_thread(use_sync_client)
    assert whole and whole == streamed
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert all(abs(math.fsum(x * x for x in v) - 1.0) < 1e-5 for v in vectors)
    assert max(abs(a - b) for a, b in zip(vectors[0], packed, strict=True)) < 1e-6  # float32 round trip
    assert status == 404


async def test_our_openai_runtime_end_to_end(openai_server: APIServer, smollm2_transformers: ModelRuntimeActor,
                                             minilm: ModelRuntimeActor) -> None:
    direct = await smollm2_transformers.chat(QUESTION, options={"max_tokens": 8, "temperature": 0})
    remote = create_actor(f"openai:smollm2@{openai_server.url}/v1")
    embedder = create_actor(f"openai:minilm@{openai_server.url}")  # no path: /v1 is added
    for actor in (remote, embedder):
        actor.start()
        await actor.wait_ready()
    try:
        answer = await remote.chat(QUESTION, options={"max_tokens": 8, "temperature": 0})
        assert answer.text == direct.text
        metrics = answer.metrics
        assert metrics.output_tokens == direct.metrics.output_tokens
        assert metrics.input_tokens == direct.metrics.input_tokens
        assert 0 < metrics.server["served_ttft_s"] <= metrics.ttft_s  # the server's own figure, labelled
        assert "openai_tokens_counted_from_chunks" not in metrics.server
        vectors = (await embedder.embed(["a cat", "a dog"])).vectors
        mine = (await minilm.embed(["a cat", "a dog"])).vectors
        norm = math.sqrt(math.fsum(x * x for x in mine[0]))
        assert max(abs(a - b / norm) for a, b in zip(vectors[0], mine[0], strict=True)) < 1e-5
    finally:
        for actor in (remote, embedder):
            await actor.stop()


async def test_bench_with_an_openai_actor_keeps_server_figures_and_no_key(
        openai_server: APIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    spec = f"openai:smollm2@{openai_server.url}/v1"
    prompts = [BenchmarkPrompt(messages=QUESTION)]
    run = await run_benchmark(BenchmarkConfig(actors=[spec], max_tokens=4), prompts=prompts)
    assert run.records and all(record.ok for record in run.records)
    server = run.records[0].metrics.server
    assert server["served_e2e_s"] > 0 and "served_ttft_s" in server
    path = save_benchmark(run, tmp_path / "run.json")
    text = path.read_text()
    assert SECRET not in text and "served_e2e_s" in json.loads(text)["records"][0]["metrics"]["server"]


async def test_a_saved_session_with_an_openai_pane_holds_no_key(
        openai_server: APIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.sessions.recorder import SessionRecorder
    from workbench.sessions.schema import PaneRecord

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    actor = create_actor(f"openai:smollm2@{openai_server.url}/v1")
    actor.start()
    await actor.wait_ready()
    recorder = SessionRecorder(tmp_path, "keys", [PaneRecord(id="p1", spec=actor.spec)])
    try:
        recorder.attach("p1", actor)
        reply = actor.chat(QUESTION, options={"max_tokens": 3, "temperature": 0})
        recorder.record_prompt("p1", QUESTION[0], correlation_id=reply.correlation_id)
        assert (await reply).text
        await asyncio.sleep(0.05)  # let the done event reach the journal
        saved = recorder.save("keys")
        for path in (saved, recorder.journal_path):
            text = path.read_text()
            assert SECRET not in text and "smollm2" in text
    finally:
        recorder.close()
        await actor.stop()
