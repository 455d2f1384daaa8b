"""The `workbench` command, run as a real program: help, `runtimes` (text and JSON), bad usage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import COMMAND_MODULES, build_parser, main

TESTS_BIN = Path(__file__).parent / "bin"
RUNTIMES = {"transformers", "torch", "ollama-rest", "ollama-lib", "ollama-cli", "openai"}


def workbench(*args: str, path_prefix: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console script (or the module, if the script is missing) offline."""
    script = Path(sys.executable).with_name("workbench")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "workbench.cli"]
    env = {**os.environ, "OLLAMA_HOST": "http://127.0.0.1:9"}  # a port nothing listens on
    env.pop("OLLAMA_BINARY", None)
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([*argv, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def test_help_lists_the_subcommands() -> None:
    done = workbench("--help")
    assert done.returncode == 0, done.stderr
    assert "runtimes" in done.stdout and "--actor SPEC" in done.stdout
    parser_choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert "runtimes" in parser_choices
    for name in parser_choices:  # every registered subcommand shows in the help
        assert name in done.stdout and name in COMMAND_MODULES
    assert workbench("--version").stdout.startswith("workbench ")


@pytest.fixture(scope="module")
def reports() -> dict[str, dict[str, object]]:
    """`workbench runtimes --json` with the stand-in `ollama` on PATH (run once: it imports torch)."""
    done = workbench("runtimes", "--json", path_prefix=TESTS_BIN)
    assert done.returncode == 0, done.stderr
    return {report["name"]: report for report in json.loads(done.stdout)}


def test_runtimes_json_lists_every_runtime_with_availability_and_reasons(reports: dict[str, dict[str, object]]) -> None:
    assert set(reports) == RUNTIMES
    for report in reports.values():
        assert isinstance(report["available"], bool) and report["summary"]
        if not report["available"]:
            assert report["reason"]  # never "no" without a why
    # Nothing answers on the Ollama port we gave: the server-based runtimes say so and where.
    for name in ("ollama-rest", "ollama-lib"):
        if reports[name]["family"] != "?":
            assert not reports[name]["available"]
            assert "127.0.0.1:9" in reports[name]["reason"]


def test_runtimes_text_says_yes_or_no_and_why() -> None:
    done = workbench("runtimes")
    assert done.returncode == 0, done.stderr
    table, _, placements = done.stdout.partition("\n\n")  # runtimes, then the ray placement's line
    lines = {line.split()[0]: line for line in table.splitlines() if line.strip()}
    assert set(lines) == RUNTIMES
    assert placements.startswith("ray placement (in-process runtimes on a Ray cluster): Ray ")
    for line in lines.values():
        assert line.split()[1] in ("yes", "no")
        if line.split()[1] == "no":
            assert "(" in line and line.rstrip().endswith(")")  # the reason, in brackets


def test_ollama_cli_is_available_when_the_binary_is_on_path(reports: dict[str, dict[str, object]]) -> None:
    with_binary = reports
    without = {r["name"]: r for r in json.loads(workbench("runtimes", "--json").stdout)}
    if shutil.which("ollama"):
        pytest.skip("a real ollama is on PATH here")
    assert with_binary["ollama-cli"]["available"] and str(TESTS_BIN) in with_binary["ollama-cli"]["reason"]
    assert not without["ollama-cli"]["available"] and "'ollama' not found" in without["ollama-cli"]["reason"]


def test_bad_usage_is_an_error_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    done = workbench("no-such-command")
    assert done.returncode == 2
    assert "invalid choice" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(SystemExit):
        main(["runtimes", "--no-such-flag"])
    assert "unrecognized arguments" in capsys.readouterr().err
