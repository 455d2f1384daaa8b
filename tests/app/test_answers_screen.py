"""The compare-answers screen (f3 and the palette) in the real app, with Pilot: panes' answers to one
prompt aligned, the first divergence marked, similarity, accuracy for a scored prompt, plain text."""

from __future__ import annotations

from textual.widgets import Static

from tests.app.conftest import scripted_factory, wait_until
from tests.support.shouting import ShoutingActor
from workbench.app.main import WorkbenchApp
from workbench.app.screens.answers import DIVERGENCE_MARK, AnswersScreen, SharedPrompt, shared_prompts
from workbench.runtimes.base import ModelRuntimeActor
from workbench.runtimes.types import ChatMessage


def factory(spec: str) -> ModelRuntimeActor:
    runtime, _, model = spec.partition(":")
    if runtime == "shouting":
        return ShoutingActor(model, name=spec)
    return scripted_factory()(spec)


def _texts(screen: AnswersScreen, selector: str) -> list[str]:
    return [str(widget.render()) for widget in screen.query(selector).results(Static)]


async def test_f3_shows_the_answers_aligned_with_divergence_and_accuracy(tmp_path) -> None:
    app = WorkbenchApp(["scripted:a", "shouting:b", "scripted:c"], tmp_path / "sessions", actor_factory=factory,
                       sample_interval_s=None, discover_ollama=False)
    async with app.run_test(size=(140, 45)) as pilot:
        await pilot.press("f3")  # nothing shared yet: a notice, no screen
        assert not isinstance(app.screen, AnswersScreen)
        for prompt in ("Say [bold]hi[/bold] to them", "Is the Sun a star? Answer yes or no."):
            await pilot.press(*prompt, "ctrl+t")
            await wait_until(pilot, lambda: all(len(p.history) >= 2 and p.history[-2].text == prompt and not p.busy
                                                for p in app.panes))
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, AnswersScreen))
        screen = app.screen
        assert isinstance(screen, AnswersScreen)
        await pilot.pause()
        # the most recent shared prompt first; a built-in scored prompt, so accuracy shows
        assert "prompt 1 of 2" in str(screen.query_one("#answers-title", Static).render())
        assert str(screen.query_one("#answers-prompt", Static).render()) == "Prompt: Is the Sun a star? Answer yes or no."
        summary = str(screen.query_one("#answers-summary", Static).render())
        assert "1 of 2 answers identical to 1 scripted's" in summary
        assert "Expected (choice of ['yes', 'no'], 'yes'): 3 of 3 right" in summary  # the echo says yes first
        headers = _texts(screen, ".answer-header")
        assert headers[0].startswith("1 scripted · reference; first divergence at character 8 · right")
        assert headers[1].startswith("2 shouting · first divergence at character 8 · similarity 0.9")
        assert headers[2].startswith("3 scripted · identical to the reference · right")
        assert _texts(screen, ".answer-text") == [
            f"Is the S{DIVERGENCE_MARK}un a star? Answer yes or no.",
            f"Is the S{DIVERGENCE_MARK}UN a star? Answer yes or no.",
            "Is the Sun a star? Answer yes or no.",
        ]
        # older prompt: markup in a model's answer stays plain text
        await pilot.press("right")
        await pilot.pause()
        assert str(screen.query_one("#answers-prompt", Static).render()) == "Prompt: Say [bold]hi[/bold] to them"
        assert "no expectation" not in str(screen.query_one("#answers-summary", Static).render())
        assert _texts(screen, ".answer-text")[0] == f"Say [bold]hi[/bold] {DIVERGENCE_MARK}to them"
        assert _texts(screen, ".answer-text")[1] == f"Say [bold]hi[/bold] {DIVERGENCE_MARK}TO them"
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, AnswersScreen))
        # the palette command opens it too
        await app.run_action("command_palette")
        await pilot.press(*"Compare answers")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, AnswersScreen))


def test_shared_prompts_pairs_turns_and_orders_by_recency() -> None:
    def history(*pairs: tuple[str, str]) -> list[ChatMessage]:
        return [ChatMessage(role=role, content=text) for user, answer in pairs
                for role, text in (("user", user), ("assistant", answer))]

    shared = shared_prompts([
        ("one", history(("old", "A1"), ("new", "B1"))),
        ("two", history(("old", "A2"), ("alone", "x"), ("new", "B2"))),
        ("three", history(("new", "B3"))),
    ])
    assert shared == [SharedPrompt("new", [("one", "B1"), ("two", "B2"), ("three", "B3")]),
                      SharedPrompt("old", [("one", "A1"), ("two", "A2")])]
