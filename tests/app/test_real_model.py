"""One test with the real embedded model: transformers:smollm2 streams an answer into a pane."""

from __future__ import annotations

from tests.app.conftest import wait_until
from tests.app.test_app import all_finished, replies
from workbench.app.main import WorkbenchApp


async def test_real_transformers_model_streams_into_a_pane(smollm2_transformers, tmp_path):
    actor = smollm2_transformers
    app = WorkbenchApp(["transformers:smollm2"], tmp_path / "sessions", actor_factory=lambda spec: actor,
                       discover_ollama=False, sample_interval_s=None, own_actors=False)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press(*"What is the capital of France?", "enter")
        await wait_until(pilot, lambda: replies(app, 0) and all_finished(app), timeout_s=120)
        (view,) = replies(app, 0)
        assert view.outcome == "done", view.figures
        assert "paris" in view.text.lower()
        assert app.panes[0].last_metrics is not None and app.panes[0].last_metrics.output_tokens
    assert actor.state.value in ("idle", "busy")  # the shared actor was left running for other tests
