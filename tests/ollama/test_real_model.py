"""The real embedded model behind `workbench serve`: the official client and our three Ollama actors
end to end on loopback, and the `workbench serve` command itself as a subprocess.

The model is the session's shared `smollm2_transformers` actor (tests/conftest.py), loaded once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import ollama
import pytest

from tests.ollama.support import STAND_IN
from workbench.runtimes.base import ModelRuntimeActor
from workbench.runtimes.registry import create_actor
from workbench.server.ollama_api import OllamaAPIServer

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "What is the capital of France?"
GREEDY = {"temperature": 0.0, "max_tokens": 10}  # "The capital of France is Paris." is 7 tokens


@pytest.fixture(scope="session")
async def real_server(smollm2_transformers: ModelRuntimeActor) -> AsyncIterator[OllamaAPIServer]:
    actor = smollm2_transformers
    # `ollama run` cannot pass options: a Modelfile-like default keeps its answers short and greedy
    server = OllamaAPIServer([actor], port=0, parameters={"num_predict": 10, "temperature": 0})
    await server.start()
    yield server
    await server.close()


async def test_official_client_asks_the_real_model(real_server: OllamaAPIServer) -> None:
    client = ollama.AsyncClient(host=real_server.url)
    options = {"temperature": 0, "num_predict": 10}
    parts = [p async for p in await client.chat(
        model="smollm2", messages=[{"role": "user", "content": QUESTION}], options=options, stream=True)]
    answer = "".join(p.message.content for p in parts)
    assert "Paris" in answer
    final = parts[-1]
    assert final.done and 0 < final.eval_count <= 10 and final.prompt_eval_count > 5
    await client._client.aclose()
    # the sync client, streaming and not, is exercised on the scripted model (test_server.py)


@pytest.mark.parametrize("kind", ["ollama-rest", "ollama-lib", "ollama-cli"])
async def test_our_ollama_actors_on_the_real_model(kind: str, real_server: OllamaAPIServer) -> None:
    options = {"binary": str(STAND_IN)} if kind == "ollama-cli" else {}
    actor = create_actor(f"{kind}:smollm2@{real_server.url}", **options)
    try:
        # `ollama run` turns thinking on for a model whose /api/show lists it; ask for the plain answer
        completion = await actor.chat(QUESTION, options=GREEDY if kind != "ollama-cli" else {"think": False})
        assert "Paris" in completion.text
        metrics = completion.metrics
        assert metrics.output_tokens and metrics.output_tokens == int(metrics.server["ollama_eval_count"])
        assert metrics.server["ollama_eval_tokens_per_s"] > 0 and metrics.ttft_s > 0
    finally:
        await actor.stop()


def test_workbench_serve_command_serves_and_stops_cleanly() -> None:
    """The command itself, on the small embedding model (quick to load): `ollama run` on an embedding
    model prints its vector as a JSON array, which is what `ollama-cli` reads for `embed`."""
    command = [sys.executable, "-m", "workbench.cli", "serve", "--actor", "transformers:minilm", "--port", "0"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("workbench serve: listening on http://127.0.0.1:"), process.stderr.read()
        url = line.split()[4]
        env = {**os.environ, "OLLAMA_HOST": url}
        run = subprocess.run([str(STAND_IN), "run", "minilm", "The sea is calm."], env=env, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        vector = json.loads(run.stdout)
        assert len(vector) == 384 and abs(sum(x * x for x in vector) - 1.0) < 1e-4
        missing = subprocess.run([str(STAND_IN), "run", "nosuch", "hi"], env=env, capture_output=True, text=True,
                                 timeout=60)
        assert missing.returncode == 1 and missing.stderr.rstrip().endswith(
            "(workbench serve cannot pull models; it serves minilm:latest)")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert "stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_command_errors_are_clear() -> None:
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "workbench.cli", "serve", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    nothing = serve()
    assert nothing.returncode == 2 and "give at least one --actor" in nothing.stderr
    unknown = serve("--actor", "nosuchruntime:model", "--port", "0")
    assert unknown.returncode == 2 and "unknown runtime 'nosuchruntime'" in unknown.stderr
