"""Shared real-model fixtures: each model loads once per test session (one event loop for the run).

Every actor here is started, shared and stopped at the end of the session; tests must leave it
serving (cancel what they start, never stop it). The converted SmolLM2 weights live in the user's
cache (`workbench.models.loading.cache_dir()`), so only the first run on a machine converts the GGUF.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from workbench.runtimes.base import ModelRuntimeActor


async def _started(spec: str) -> ModelRuntimeActor:
    from workbench.runtimes.registry import create_actor

    actor = create_actor(spec)
    actor.start()
    await actor.wait_ready()
    return actor


# ----- transformers (issue 3) -----------------------------------------------------------------------------
@pytest.fixture(scope="session")
async def smollm2_transformers() -> AsyncIterator[ModelRuntimeActor]:
    """A started `TransformersRuntimeActor` on the embedded SmolLM2-135M-Instruct."""
    actor = await _started("transformers:smollm2")
    yield actor
    await actor.stop()


@pytest.fixture(scope="session")
async def minilm() -> AsyncIterator[ModelRuntimeActor]:
    """A started `TransformersRuntimeActor` on the embedded all-MiniLM-L6-v2 (embeddings only)."""
    actor = await _started("transformers:minilm")
    yield actor
    await actor.stop()


# ----- torch engine (issue 3): `smollm2_torch` goes here ----------------------------------------------
