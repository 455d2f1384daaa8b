"""Stop strings and the thinking split, fed in awkward pieces (tags and stops split across tokens)."""

from __future__ import annotations

from workbench.runtimes.streamtext import ThinkSplitter
from workbench.textgen.stops import StopMatcher


def _split(pieces: list[str], thinking: bool = False) -> tuple[str, str, int]:
    splitter = ThinkSplitter(thinking=thinking)
    chunks = [chunk for piece in pieces for chunk in splitter.push(piece, 1)] + splitter.flush()
    return (
        "".join(chunk.thinking for chunk in chunks),
        "".join(chunk.text for chunk in chunks),
        sum(chunk.tokens or 0 for chunk in chunks),
    )


def test_think_block_split_across_pieces() -> None:
    assert _split(["  <th", "ink>a", "bc </th", "ink>\n\nHel", "lo"]) == ("abc ", "Hello", 5)


def test_block_opened_by_the_prompt() -> None:
    assert _split(["\n ab", "c", "</think>", " Paris"], thinking=True) == ("abc", "Paris", 4)


def test_unclosed_block_is_all_thinking() -> None:
    assert _split(["step one", " </thi"], thinking=True) == ("step one </thi", "", 2)


def test_no_block_means_all_answer_even_with_a_later_tag() -> None:
    assert _split(["Hello ", "<think> x"]) == ("", "Hello <think> x", 2)
    assert _split(["<", "b>"]) == ("", "<b>", 2)


def test_stop_string_split_across_pieces_is_never_shown() -> None:
    matcher = StopMatcher(["END", "\n\n"])
    shown = [matcher.push(piece) for piece in ["abc E", "N", "x E", "ND more"]]
    assert shown == ["abc ", "", "ENx ", ""]
    assert matcher.stopped and matcher.push("later") == "" and matcher.flush() == ""


def test_earliest_stop_wins_and_held_text_is_flushed() -> None:
    matcher = StopMatcher(["c", "ab"])
    assert matcher.push("xab c") == "x"
    other = StopMatcher(["stop"])
    assert other.push("a st") == "a " and other.flush() == "st"
