"""Session fixtures for the OpenAI tests: the loopback replay server (llama.cpp / vLLM shapes, faults)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.openai.support import ReplayServer


@pytest.fixture(scope="session")
async def replay() -> AsyncIterator[ReplayServer]:
    server = ReplayServer(slow_s=2.0)
    await server.start()
    yield server
    await server.close()
