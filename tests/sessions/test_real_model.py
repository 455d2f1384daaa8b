"""Recording and re-running with the real embedded model (SmolLM2-135M through transformers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sessions.helpers import ask, scripted
from workbench.runtimes.base import ModelRuntimeActor
from workbench.runtimes.types import Completion, GenerationOptions
from workbench.sessions.playback import transcript
from workbench.sessions.recorder import SessionRecorder
from workbench.sessions.rerun import rerun_session
from workbench.sessions.schema import ChunkEvent, PaneRecord
from workbench.sessions.store import load_session

GREEDY_SHORT = GenerationOptions(max_tokens=8, temperature=0.0)


@pytest.fixture
def smollm2(smollm2_transformers: ModelRuntimeActor) -> ModelRuntimeActor:
    """The session's shared SmolLM2 actor (tests/conftest.py), taken as a plain dependency. It was
    looked up with `request.getfixturevalue` from an async fixture, which makes pytest-asyncio set the
    session fixture up with `Runner.run()` inside the running loop: that fails unless an earlier
    test happened to set it up first, so the file failed when run alone."""
    return smollm2_transformers


async def test_real_model_session_is_journaled(tmp_path: Path, smollm2: ModelRuntimeActor) -> None:
    """The journal holds exactly the stream the model produced, and its figures."""
    recorder = SessionRecorder(tmp_path, "real", [PaneRecord(id="hf", spec=smollm2.spec)])
    recorder.attach("hf", smollm2)
    answer = await ask(recorder, "hf", smollm2, "What is the capital of France?", options=GREEDY_SHORT)
    recorder.close()
    assert isinstance(answer, Completion), answer
    loaded = load_session(recorder.journal_path)
    turn = transcript(loaded)["hf"][0]
    assert turn.status == "done" and turn.text == answer.text and "Paris" in turn.text
    assert turn.metrics is not None and answer.metrics is not None
    assert turn.metrics.output_tokens == answer.metrics.output_tokens
    assert turn.metrics.ttft_s is not None and turn.metrics.ttft_s > 0
    chunks = [event for event in loaded.events if isinstance(event, ChunkEvent)]
    assert 1 <= len(chunks) <= 8


async def test_scripted_session_rerun_on_the_real_model(tmp_path: Path, smollm2: ModelRuntimeActor) -> None:
    """A session recorded on one actor, re-run on the real model, two turns with its own context."""
    echo = scripted()
    recorder = SessionRecorder(tmp_path, "to rerun", [PaneRecord(id="a", spec=echo.spec)])
    recorder.attach("a", echo)
    first = await ask(recorder, "a", echo, "What is the capital of France?", options=GREEDY_SHORT)
    await ask(recorder, "a", echo, "And of Italy?",
              [{"role": "user", "content": "What is the capital of France?"},
               {"role": "assistant", "content": first.text}], options=GREEDY_SHORT)
    recorder.close()
    await echo.stop()

    result = await rerun_session(recorder.session(), {"a": smollm2}, folder=tmp_path)
    new = [comparison.new for comparison in result.comparisons]
    assert [turn.status for turn in new] == ["done", "done"]
    assert "Paris" in new[0].text and new[0].text != result.comparisons[0].recorded.text
    assert all(turn.metrics is not None and 1 <= (turn.metrics.output_tokens or 0) <= 8 for turn in new)
    assert result.specs == {"a": smollm2.spec}
    assert [t.text for t in transcript(load_session(result.path))["a"]] == [t.text for t in new]
