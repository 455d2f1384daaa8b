"""Checks every placement of a model worker must pass (process and ray alike), written once."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.actors.actor import ActorState
from workbench.errors import MessageCancelled
from workbench.runtimes.base import ModelRuntimeActor

QUESTION = "What is the capital of France?"
GREEDY = {"temperature": 0.0}
LONG = "Write a long story about a dragon."


async def assert_cancel_stops_the_worker_within_a_token(actor: ModelRuntimeActor) -> None:
    """Cancel a long stream after 3 tokens: the worker stops at its next token, so the next answer
    does not wait behind the ~400 tokens that were asked for."""
    reply = actor.generate(LONG, options=GREEDY | {"max_tokens": 400})
    seen = 0
    with pytest.raises(MessageCancelled):
        async for chunk in reply:
            seen += chunk.tokens or 0
            if seen >= 3:
                reply.cancel()
    assert 3 <= seen < 400
    after = await actor.chat(QUESTION, options=GREEDY | {"max_tokens": 1})
    assert after.metrics.output_tokens == 1 and after.metrics.queued_s < 1.0
    assert after.metrics.e2e_s < 10.0  # 400 tokens take far longer on this machine
    assert actor.state == ActorState.IDLE


async def graphed_memory(
    actors: dict[str, ModelRuntimeActor], tmp_path: Path
) -> tuple[dict[str, float], dict[str, ModelRuntimeActor]]:
    """Open the app on these running actors (spec -> actor), take one memory sample, and return the
    last MiB of each memory series (by label) and each pane's actor (by title)."""
    from workbench.app.main import WorkbenchApp

    app = WorkbenchApp(list(actors), tmp_path / "sessions", actor_factory=actors.__getitem__, discover_ollama=False,
                       sample_interval_s=None, own_actors=False, settings_path=tmp_path / "settings.json")
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        app.sample_resources()
        await pilot.pause()
        last_mib = {label: points[-1][1] for label, points in app.graph_data.memory.items()}
        return last_mib, {pane.title: pane.actor for pane in app.panes}
