"""The pane header says what the runtime really runs (e.g. the torch engine's weights mode), and a
fallback shows as such: never silently a different mode than the one asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.app.conftest import wait_until
from tests.support.scripted import ScriptedActor
from workbench.app.main import WorkbenchApp


class ReportingActor(ScriptedActor):
    """Reports weights the way the torch runtime does (`dtype` runs, `details.weights_requested` asked)."""

    def __init__(self, model: str, running: str, asked: str, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.running, self.asked = running, asked

    async def runtime_stats(self) -> dict[str, Any]:
        return {"dtype": self.running, "details": {"weights": self.running, "weights_requested": self.asked,
                                                    "weights_note": f"{self.running} (scripted)"}}


async def test_header_names_the_running_mode_and_a_fallback(tmp_path: Path) -> None:
    def build(spec: str) -> ReportingActor:
        _, _, model = spec.partition(":")
        running = "fp32" if model == "fallback" else "q4"
        return ReportingActor(model, running, "q4", name=spec)

    app = WorkbenchApp(["scripted:fine", "scripted:fallback"], tmp_path / "sessions", actor_factory=build,
                       sample_interval_s=None, discover_ollama=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_until(pilot, lambda: all(pane.runtime_note for pane in app.panes))
        fine, fallback = app.panes
        assert "· q4  │" in fine.header_text() and "unavailable" not in fine.header_text()
        assert "· fp32, q4 unavailable  │" in fallback.header_text()
