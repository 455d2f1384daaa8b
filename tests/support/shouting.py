"""A scripted actor that answers like `ScriptedActor` but shouts the third word, so two panes' or two
actors' answers part at a known character ("alpha beta |GAMMA delta": character 11)."""

from __future__ import annotations

from collections.abc import Iterator

from tests.support.scripted import ScriptedActor


class ShoutingActor(ScriptedActor):
    runtime = "shouting"

    def _words(self, text: str) -> Iterator[str]:
        for index, word in enumerate(super()._words(text)):
            yield word.upper() if index == 2 else word
