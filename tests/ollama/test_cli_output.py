"""Parsing what `ollama run` prints: Go durations, --verbose statistics, escapes, thinking blocks."""

from __future__ import annotations

import pytest

from workbench.runtimes.ollama_cli import (
    RunOutputParser,
    conversation_prompt,
    error_line,
    parse_go_duration,
    parse_verbose_stats,
    run_flags,
    strip_escapes,
)
from workbench.runtimes.types import ChatMessage, GenerationOptions


@pytest.mark.parametrize(("text", "seconds"), [
    ("0s", 0.0), ("0", 0.0), ("500ns", 500e-9), ("950µs", 950e-6), ("950μs", 950e-6), ("12us", 12e-6),
    ("85.2ms", 0.0852), ("1.2s", 1.2), ("1.234567891s", 1.234567891), ("1m2.5s", 62.5), ("2h0m1s", 7201.0),
    ("1h2m3.004s", 3723.004),
])
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("text", ["", "1.2", "s", "1x", "1s2", "ms5"])
def test_bad_go_durations_raise(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


SPINNER_THEN_STATS = (
    "\x1b[?2026h\x1b[?25l\x1b[1G⠋ \x1b[K\x1b[?25h\x1b[?2026l\x1b[?2026h\x1b[?25l\x1b[1G⠙ \x1b[K\x1b[?25h\x1b[?2026l"
    "\x1b[?25l\x1b[2K\x1b[1G\x1b[?25h"
    "total duration:       1m2.5s\n"
    "load duration:        950µs\n"
    "prompt eval count:    26 token(s)\n"
    "prompt eval duration: 85.2ms\n"
    "prompt eval rate:     305.16 tokens/s\n"
    "eval count:           290 token(s)\n"
    "eval duration:        1.1s\n"
    "eval rate:            263.64 tokens/s\n"
)


def test_verbose_stats_after_the_spinner() -> None:
    assert parse_verbose_stats(SPINNER_THEN_STATS) == {
        "ollama_total_duration_s": 62.5,
        "ollama_load_duration_s": pytest.approx(950e-6),
        "ollama_prompt_eval_count": 26.0,
        "ollama_prompt_eval_duration_s": pytest.approx(0.0852),
        "ollama_prompt_eval_tokens_per_s": 305.16,
        "ollama_eval_count": 290.0,
        "ollama_eval_duration_s": pytest.approx(1.1),
        "ollama_eval_tokens_per_s": 263.64,
    }


def test_verbose_stats_may_be_partial_or_absent() -> None:
    assert parse_verbose_stats("eval count:           3 token(s)\n") == {"ollama_eval_count": 3.0}
    assert parse_verbose_stats("Error: something\n") == {}


def test_escape_sequences_are_stripped() -> None:
    text = "\x1b[38;5;245m\x1b[1mThinking...\n\x1b[0m\x1b]0;title\x07plain\x1b[K\x1b[?25h"
    assert strip_escapes(text) == "Thinking...\nplain"


def test_error_line_is_found_after_escapes() -> None:
    assert error_line("\x1b[?25l\x1b[?25hError: model 'x' not found\n") == "model 'x' not found"
    assert error_line("no error here") is None


THINKING_OUTPUT = "Thinking...\nFirst, recall.\nParis it is.\n...done thinking.\n\nThe capital is Paris.\n\n"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_thinking_is_separated_whatever_the_piece_size(size: int) -> None:
    parser = RunOutputParser()
    chunks = []
    for start in range(0, len(THINKING_OUTPUT), size):
        chunks += parser.feed(THINKING_OUTPUT[start:start + size])
    chunks += parser.close()
    assert "".join(c.thinking for c in chunks) == "First, recall.\nParis it is."
    assert "".join(c.text for c in chunks) == "The capital is Paris."
    # thinking streams before the answer
    kinds = ["thinking" if c.thinking else "text" for c in chunks]
    assert kinds == sorted(kinds, key=lambda kind: kind == "text")


def test_coloured_thinking_from_a_terminal_is_separated_too() -> None:
    grey, bold, reset = "\x1b[38;5;245m", "\x1b[1m", "\x1b[0m"
    output = f"{grey}{bold}Thinking...\n{reset}{grey}hmm{grey}{bold}\n...done thinking.\n\n{reset}Answer\n\n"
    parser = RunOutputParser()
    chunks = [*parser.feed(output[:5]), *parser.feed(output[5:]), *parser.close()]
    assert "".join(c.thinking for c in chunks) == "hmm"
    assert "".join(c.text for c in chunks) == "Answer"


def test_answer_without_thinking_keeps_inner_newlines_and_drops_the_cli_trailer() -> None:
    parser = RunOutputParser()
    chunks = [*parser.feed("Think about it.\n\n"), *parser.feed("Line two\n"), *parser.feed("\n\n"), *parser.close()]
    assert "".join(c.text for c in chunks) == "Think about it.\n\nLine two\n"
    assert not any(c.thinking for c in chunks)


def test_conversation_prompt() -> None:
    single = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hi")]
    assert conversation_prompt(single) == "Be brief.\n\nHi"
    longer = [*single, ChatMessage(role="assistant", content="Hello!"), ChatMessage(role="user", content="Bye")]
    assert conversation_prompt(longer) == "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: Bye\n\nAssistant:"


def test_run_flags() -> None:
    assert run_flags(GenerationOptions()) == ["--nowordwrap", "--verbose"]
    options = GenerationOptions(think="low", extra={"format": "json", "keep_alive": 300, "hide_thinking": True})
    assert run_flags(options) == ["--nowordwrap", "--verbose", "--think=low", "--hidethinking",
                                  "--format", "json", "--keepalive", "300s"]
    assert "--think=false" in run_flags(GenerationOptions(think=False))


@pytest.mark.parametrize(("ns", "text"), [
    (0, "0s"), (500, "500ns"), (950_000, "950µs"), (85_200_000, "85.2ms"), (1_200_000_000, "1.2s"),
    (1_234_567_891, "1.234567891s"), (62_500_000_000, "1m2.5s"), (3_723_004_000_000, "1h2m3.004s"),
])
def test_the_stand_in_prints_go_durations_that_we_parse_back(ns: int, text: str) -> None:
    import importlib.machinery
    import importlib.util

    from tests.ollama.support import STAND_IN

    loader = importlib.machinery.SourceFileLoader("ollama_stand_in", str(STAND_IN))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("ollama_stand_in", loader))
    loader.exec_module(module)
    assert module.go_duration(ns) == text
    assert parse_go_duration(text) == pytest.approx(ns / 1e9, rel=1e-12, abs=1e-15)
