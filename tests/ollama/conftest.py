"""Session fixtures for the Ollama tests: one `workbench serve` API server (in this process, on
loopback) over scripted actors, and a misbehaving server for fault cases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.ollama.support import EmbeddingOnly, FaultServer, ThinkingScripted
from tests.support.scripted import ScriptedActor
from workbench.server.ollama_api import OllamaAPIServer


@pytest.fixture(scope="session")
async def scripted_server() -> AsyncIterator[OllamaAPIServer]:
    actors = [ScriptedActor("echo", delay_s=0.002), ThinkingScripted("thinker"), EmbeddingOnly("embedder"),
              ScriptedActor("slowpoke", delay_s=0.2)]
    for actor in actors:
        actor.start()
        await actor.wait_ready()
    server = OllamaAPIServer(actors, port=0)
    await server.start()
    yield server
    await server.close()
    for actor in actors:
        await actor.stop()


@pytest.fixture(scope="session")
async def fault_server() -> AsyncIterator[FaultServer]:
    server = FaultServer(slow_s=2.0)
    await server.start()
    yield server
    await server.close()
