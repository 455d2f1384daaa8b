"""Text given "as context" (read, seed 002) to one pane or all: shown in the conversation, read by the
actor ahead of later prompts, journaled as a read turn; `@FILE` attaches a file."""

from __future__ import annotations

import math
from pathlib import Path

from textual.widgets import Static

from tests.app.conftest import wait_until
from tests.sessions.helpers import ContextActor
from workbench.app.main import WorkbenchApp
from workbench.app.screens.actors import ActorsScreen
from workbench.app.screens.playback import PlaybackScreen
from workbench.app.widgets.chat_pane import ChatPane
from workbench.app.widgets.reply_view import ReplyView
from workbench.sessions.schema import PromptEvent


def views(app: WorkbenchApp, index: int) -> list[ReplyView]:
    return list(app.panes[index].query(ReplyView).results(ReplyView))


def finished(app: WorkbenchApp) -> bool:
    return all(view.finished for pane in app.panes for view in pane.query(ReplyView).results(ReplyView))


async def test_context_to_one_pane_or_all_comes_ahead_of_the_next_prompt(tmp_path: Path) -> None:
    app = WorkbenchApp(["context:a", "context:b"], tmp_path / "sessions", sample_interval_s=None,
                       discover_ollama=False, actor_factory=lambda spec: ContextActor(spec.split(":")[1], name=spec))
    document = tmp_path / "notes.txt"
    document.write_text("Fredville is the capital of Freedonia.", encoding="utf-8")
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press(*"Answer tersely", "ctrl+r")
        await wait_until(pilot, lambda: views(app, 0) and finished(app))
        (context_view,) = views(app, 0)
        assert context_view.has_class("context") and context_view.outcome == "done"
        assert "read as context" in context_view.figures and views(app, 1) == []

        app.query_one("#prompt").value = f"@{document}"
        await pilot.press("alt+r")
        await wait_until(pilot, lambda: len(views(app, 1)) == 1 and len(views(app, 0)) == 2 and finished(app))
        assert "Fredville" in views(app, 1)[0].prompt

        await pilot.press(*"Capital?", "enter")
        await wait_until(pilot, lambda: len(views(app, 0)) == 3 and finished(app))
        assert views(app, 0)[2].text == ("a saw user=Answer tersely / user=Fredville is the capital of Freedonia. "
                                         "/ user=Capital?")
        assert [m.text for m in app.panes[0].history] == ["Capital?", views(app, 0)[2].text]

        app.query_one("#prompt").value = f"@{tmp_path / 'missing.txt'}"
        await pilot.press("ctrl+r")
        await pilot.pause(0.05)
        assert len(views(app, 0)) == 3  # nothing read: the problem is notified

        app.action_forget_context()  # (the palette's "Forget context")
        await wait_until(pilot, lambda: len(views(app, 0)) == 4 and finished(app))
        assert views(app, 0)[3].figures == "the actor holds no context now"
        await pilot.press(*"Again?", "enter")
        await wait_until(pilot, lambda: len(views(app, 0)) == 5 and finished(app))
        assert views(app, 0)[4].text.startswith("a saw user=Capital? / assistant=")  # the history, no context

        session = app.recorder.session()
        prompts = [e for e in session.events if isinstance(e, PromptEvent)]
        first, second = app.panes[0].id, app.panes[1].id
        assert [(e.pane, e.operation) for e in prompts] == [
            (first, "read"), (first, "read"), (second, "read"), (first, "chat"), (first, "forget"), (first, "chat")]

        playback = PlaybackScreen(session, speed=math.inf)
        await app.push_screen(playback)
        await wait_until(pilot, lambda: playback.finished)
        played = list(list(playback.query(ChatPane).results(ChatPane))[0].query(ReplyView).results(ReplyView))
        assert [(v.has_class("context"), v.figures) for v in played][:2] == [
            (True, "read as context"), (True, "read as context")]
        assert [v.has_class("context") for v in played] == [True, True, False, True, False]
        assert played[3].figures == "context forgotten"


async def test_the_actors_screen_shows_the_selected_actors_recent_streams(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press(*"alpha beta", "enter")
        await pilot.press(*"please FAIL now", "enter")
        await wait_until(pilot, lambda: len(views(app, 0)) == 2 and finished(app))
        await pilot.press("f2")
        assert isinstance(app.screen, ActorsScreen)
        streams = app.screen.query_one("#streams-text", Static)
        await wait_until(pilot, lambda: "last 2 message(s)" in str(streams.content))
        text = str(streams.content)
        assert "> user: alpha beta\nalpha beta" in text
        assert " chat " in text and " done · queued " in text
        assert "error: ValueError: scripted failure" in text
        await pilot.press("down")  # the second pane: nothing asked there yet
        await wait_until(pilot, lambda: str(streams.content) == "scripted:b: no messages yet")
