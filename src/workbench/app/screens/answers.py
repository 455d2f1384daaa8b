"""Compare answers: one prompt that went to several panes, their answers one under the other, each
split where it first leaves the first pane's answer (the reference), with its similarity to it and,
when the prompt is one of the built-in scored prompts, whether it is right.

The screen is given what to show (`SharedPrompt`s, gathered from the panes' conversations by
`shared_prompts`); it never touches the actors. Every answer and prompt is shown as plain text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from workbench.app.widgets import css_beside
from workbench.bench.agreement import align_answers
from workbench.bench.prompts import find_expectation
from workbench.bench.scoring import score_answer
from workbench.runtimes.types import ChatMessage
from workbench.sessions.schema import Expectation

DIVERGENCE_MARK = "▶"


@dataclass(frozen=True, slots=True)
class SharedPrompt:
    """A prompt and the answers (pane label, text) of every pane that answered it."""

    prompt: str
    answers: list[tuple[str, str]]


def conversation_turns(history: Sequence[ChatMessage]) -> list[tuple[str, str]]:
    """(user text, assistant text) for each answered turn of a pane's conversation."""
    turns = []
    for user, reply in zip(history, history[1:]):
        if user.role == "user" and reply.role == "assistant":
            turns.append((user.text, reply.text))
    return turns


def shared_prompts(histories: Sequence[tuple[str, Sequence[ChatMessage]]]) -> list[SharedPrompt]:
    """Prompts answered by two or more panes, the most recent first; each pane's latest answer to it,
    in pane order. `histories` is (pane label, conversation) per pane."""
    answers: dict[str, dict[str, str]] = {}
    recency: dict[str, int] = {}
    for label, history in histories:
        turns = conversation_turns(history)
        for age, (prompt, answer) in enumerate(reversed(turns)):
            key = prompt.strip()
            answers.setdefault(key, {}).setdefault(label, answer)
            recency[key] = min(recency.get(key, age), age)
    order = [label for label, _ in histories]
    shared = [
        SharedPrompt(prompt, [(label, by_pane[label]) for label in order if label in by_pane])
        for prompt, by_pane in answers.items()
        if len(by_pane) >= 2
    ]
    return sorted(shared, key=lambda item: recency[item.prompt])


def marked_answer(same: str, rest: str, diverges: bool) -> Text:
    """The answer with the part after the first divergence highlighted (and a mark where it starts)."""
    text = Text(same, end="")
    if diverges:
        text.append(DIVERGENCE_MARK, style="bold red")
        text.append(rest, style="reverse")
    return text


class AnswersScreen(Screen[None]):
    DEFAULT_CSS = css_beside(__file__)
    BINDINGS = [
        Binding("right,n", "step(1)", "Older prompt", id="answers.older"),
        Binding("left,p", "step(-1)", "Newer prompt", id="answers.newer"),
        Binding("escape,f3", "close", "Back", id="answers.close"),
    ]

    def __init__(self, prompts: Sequence[SharedPrompt]) -> None:
        super().__init__()
        self.prompts = list(prompts)
        self.index = 0

    def compose(self) -> ComposeResult:
        with Vertical(id="answers-body"):
            yield Static("", id="answers-title", classes="title", markup=False)
            yield Static("", id="answers-prompt", markup=False)
            yield Static("", id="answers-summary", markup=False)
            yield VerticalScroll(id="answers-list")
        yield Footer()

    def on_mount(self) -> None:
        self.show(0)

    @property
    def current(self) -> SharedPrompt | None:
        return self.prompts[self.index] if self.prompts else None

    def show(self, index: int) -> None:
        """Show prompt `index` (0 = the most recent)."""
        if not self.prompts:
            self.query_one("#answers-title", Static).update("No prompt was answered by two or more panes yet")
            return
        self.index = max(0, min(index, len(self.prompts) - 1))
        shared = self.prompts[self.index]
        self.query_one("#answers-title", Static).update(
            f"Answers compared: prompt {self.index + 1} of {len(self.prompts)} (most recent first; ← → to move)")
        self.query_one("#answers-prompt", Static).update(Text(f"Prompt: {shared.prompt}", end=""))
        expected = find_expectation(shared.prompt)
        aligned = align_answers(shared.answers)
        identical = sum(1 for answer in aligned[1:] if answer.first_divergence is None)
        summary = (f"{identical} of {len(aligned) - 1} answers identical to {aligned[0].label}'s; "
                   "positions are characters; similarity is normalised edit similarity to the first answer")
        if expected is not None:
            right = sum(1 for _, answer in shared.answers if score_answer(expected, answer).correct)
            summary += f"\nExpected ({describe_expectation(expected)}): {right} of {len(shared.answers)} right"
        self.query_one("#answers-summary", Static).update(Text(summary, end=""))
        listing = self.query_one("#answers-list", VerticalScroll)
        listing.remove_children()
        widgets = []
        for number, answer in enumerate(aligned):
            if number == 0:
                where = ("reference" if answer.first_divergence is None
                         else f"reference; first divergence at character {answer.first_divergence}")
            elif answer.first_divergence is None:
                where = "identical to the reference"
            else:
                where = f"first divergence at character {answer.first_divergence} · similarity {answer.similarity:.3f}"
            if expected is not None:
                score = score_answer(expected, answer.same + answer.rest)
                where += f" · {'right' if score.correct else 'wrong'} ({score.note})"
            widgets.append(Static(Text(f"{answer.label} · {where}", end=""), classes="answer-header", markup=False))
            widgets.append(Static(marked_answer(answer.same, answer.rest, answer.first_divergence is not None),
                                  classes="answer-text", markup=False))
        listing.mount_all(widgets)

    def action_step(self, step: int) -> None:
        self.show(self.index + step)

    def action_close(self) -> None:
        self.dismiss(None)


def describe_expectation(expected: Expectation) -> str:
    """A few words on what a right answer is (plain text)."""
    if expected.match == "choice":
        return f"choice of {expected.options}" + (f", {expected.value!r}" if expected.value is not None else "")
    if expected.match == "number":
        return f"number {expected.value}" + (f" ± {expected.tolerance:g}" if expected.tolerance else "")
    if expected.match == "json":
        return "JSON" + (f" with keys {expected.keys}" if expected.keys else "")
    return f"{expected.match} {expected.value!r}"
