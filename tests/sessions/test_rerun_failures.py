"""A re-run whose actor cannot start shows why on every turn (issue 11: it showed "unfinished")."""

from __future__ import annotations

from pathlib import Path

from tests.sessions.helpers import scripted
from tests.sessions.test_rerun import record_session
from workbench.commands.replay import print_comparison
from workbench.sessions.playback import transcript
from workbench.sessions.rerun import rerun_session
from workbench.sessions.store import load_session


async def test_a_rerun_whose_actor_fails_to_start_shows_the_error(tmp_path: Path, test_runtimes: None) -> None:
    session = await record_session(tmp_path / "recorded")
    broken = scripted("missing")  # its model file does not exist: on_start fails
    result = await rerun_session(session, {"b": broken}, folder=tmp_path / "reruns")
    turns = result.by_pane()["b"]
    assert [c.new.status for c in turns] == ["error", "error"]
    assert all(c.new.error and "does not exist" in c.new.error for c in turns)
    assert result.path is not None
    saved = transcript(load_session(result.path))["b"]
    assert [t.status for t in saved] == ["error", "error"] and "does not exist" in (saved[0].error or "")

    class Out:
        text = ""

        def write(self, text: str) -> None:
            Out.text += text

        def flush(self) -> None:
            pass

    print_comparison(result, Out())  # type: ignore[arg-type]
    assert "[unfinished]" not in Out.text and Out.text.count("does not exist") >= 2
    await broken.stop()
