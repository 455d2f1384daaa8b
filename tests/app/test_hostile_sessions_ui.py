"""The app with hostile session files (issue 11): the browser reads the folder off the UI thread,
refuses FIFOs and device links, and shows markup-looking names and texts as plain text."""

from __future__ import annotations

from tests.app.conftest import wait_until
from tests.sessions.test_hostile_files import hostile_folder
from tests.test_sessions import make_session
from workbench.app.screens.playback import PlaybackScreen
from workbench.app.screens.session_browser import SessionBrowser
from workbench.runtimes.types import ChatMessage
from workbench.sessions import PaneRecord, PromptEvent, save_session
from workbench.sessions.schema import ChatSession, ChunkEvent, DoneEvent

MARKUP = "[/] [bold]x[/bold] [link=file:///etc/passwd]y[/link] [/nope]"


def markup_session() -> ChatSession:
    session = make_session("markup")
    pane = PaneRecord(id="p9", spec="scripted:a", title=MARKUP)
    events = [PromptEvent(t=0.0, pane="p9", correlation_id="m1", message=ChatMessage(role="user", content=MARKUP)),
              ChunkEvent(t=0.1, pane="p9", correlation_id="m1", text=MARKUP),
              DoneEvent(t=0.2, pane="p9", correlation_id="m1")]
    return session.model_copy(update={"name": MARKUP, "panes": [*session.panes, pane],
                                      "events": [*session.events, *events]})


async def test_the_browser_lists_hostile_folders_off_the_ui_thread_and_shows_markup_as_text(make_app, tmp_path):
    folder = tmp_path / "sessions"
    hostile_folder(folder)
    save_session(markup_session(), folder / "markup.json")
    app = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("ctrl+o")
        browser = app.screen
        assert isinstance(browser, SessionBrowser)
        await wait_until(pilot, lambda: browser.loaded)
        assert [summary.name for summary in browser.summaries] == [MARKUP]
        problems = str(browser.query_one("#problems").content)
        assert "fifo.json" in problems and "zero.json" in problems
        await pilot.pause()
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, PlaybackScreen))
        playback = app.screen
        await wait_until(pilot, lambda: playback.finished)
        await pilot.pause()
        assert app.is_running
