"""Stop strings on streamed text: cut at the first one, never show a stop string's first characters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["StopMatcher", "held_back"]


def held_back(text: str, markers: Sequence[str]) -> int:
    """How many trailing characters of `text` could be the start of one of `markers`."""
    hold = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), hold, -1):
            if text.endswith(marker[:size]):
                hold = size
                break
    return hold


@dataclass
class StopMatcher:
    """Cuts the text at the first stop string; holds back text that might begin one.

    Feed it text deltas with :meth:`push`; it returns what is safe to show now. Once a stop string
    has been seen, `stopped` is True and nothing more comes out.
    """

    stops: Sequence[str]
    _pending: str = ""
    stopped: bool = False

    def __post_init__(self) -> None:
        self.stops = [stop for stop in self.stops if stop]

    def push(self, delta: str) -> str:
        """The text that is safe to show now; after a stop string, `stopped` is True and nothing more."""
        if self.stopped:
            return ""
        if not self.stops:
            return delta
        text = self._pending + delta
        positions = [index for stop in self.stops if (index := text.find(stop)) >= 0]
        if positions:
            self.stopped = True
            self._pending = ""
            return text[: min(positions)]
        hold = held_back(text, self.stops)
        self._pending = text[len(text) - hold:] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        """What was held back, at the end of a stream that never completed a stop string."""
        pending, self._pending = self._pending, ""
        return "" if self.stopped else pending
