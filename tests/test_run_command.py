"""`workbench run`: output shapes and errors through a fast scripted runtime, and the real model
through the installed command as a subprocess (the issue's Paris question)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.scripted import ScriptedActor
from workbench.cli import main
from workbench.runtimes.registry import RuntimeEntry, register_runtime, unregister_runtime

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def scripted_runtime() -> Iterator[None]:
    register_runtime(RuntimeEntry("scripted", ScriptedActor, "test actor"))
    yield
    unregister_runtime("scripted")


def test_text_streams_then_prints_metrics(scripted_runtime: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "scripted:echo", "hello there world"]) == 0
    answer, metrics = capsys.readouterr().out.splitlines()
    assert answer == "hello there world"
    assert "TTFT" in metrics and "E2E" in metrics and "tokens in 3 / out 3" in metrics


def test_think_is_prefixed_when_not_a_terminal(scripted_runtime: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "scripted:echo", "two words", "--op", "think"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["thinking: considering", "", "two words"]


def test_json_is_one_object(scripted_runtime: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "scripted:echo", "a b", "--json", "--op", "generate", "--max-tokens", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"] == "a b" and result["operation"] == "generate" and result["spec"] == "scripted:echo"
    assert result["metrics"]["output_tokens"] == 2 and result["metrics"]["ttft_s"] is not None


def test_embed_takes_several_texts(scripted_runtime: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "scripted:echo", "one", "two words", "--op", "embed", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["vectors"] == [[3.0, 1.0, 1.0], [9.0, 2.0, 1.0]] and result["dimensions"] == 3


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["run", "nope:x", "hi"], "unknown runtime 'nope'"),
        (["run", "transformers:no-such-model", "hi"], "installed: smollm2"),
        (["run", "smollm2", "hi", "--op", "summarize_image", "--image", "/no/such.png"], "image file not found"),
        (["run", "smollm2", "--op", "summarize_image"], "needs --image"),
        (["run", "smollm2", "one", "two"], "takes one prompt"),
        (["run", "scripted:echo", "hi", "--temperature", "-1"], "bad option --temperature"),
        (["run", "scripted:missing", "hi"], "model 'missing' does not exist"),
    ],
)
def test_errors_are_one_line_and_exit_2(
    scripted_runtime: None, capsys: pytest.CaptureFixture[str], argv: list[str], problem: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert problem in err and "\n" not in err and err.startswith("workbench: ")


def test_real_model_answers_paris_from_the_command_line() -> None:
    command = [sys.executable, "-m", "workbench.cli", "run", "transformers:smollm2",
               "What is the capital of France?", "--json", "--temperature", "0", "--max-tokens", "12",
               "--threads", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "Paris" in result["answer"]
    assert result["metrics"]["input_tokens"] > 10 and 0 < result["metrics"]["output_tokens"] <= 12



def test_an_option_between_the_spec_and_the_prompt_still_takes_the_prompt(
    scripted_runtime: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "scripted:echo", "--op", "think", "two words"]) == 0
    assert capsys.readouterr().out.splitlines()[:3] == ["thinking: considering", "", "two words"]
    with pytest.raises(SystemExit) as exited:  # an unknown option is still refused
        main(["run", "scripted:echo", "--bogus", "two words"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --bogus two words" in capsys.readouterr().err
