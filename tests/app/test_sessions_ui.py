"""Pilot tests for sessions in the app: save under a name, browse, play back, re-run."""

from __future__ import annotations

from tests.app.conftest import wait_until
from tests.app.test_app import all_finished, replies
from workbench.app.screens.playback import PlaybackScreen
from workbench.app.screens.rerun import RerunScreen
from workbench.app.screens.session_browser import SessionBrowser
from workbench.app.widgets.chat_pane import ChatPane
from workbench.app.widgets.reply_view import ReplyView
from workbench.sessions.store import load_session


async def chat_and_save(app, pilot, name: str = "my comparison") -> None:
    await pilot.press(*"alpha beta", "ctrl+t")
    await wait_until(pilot, lambda: all(replies(app, i) for i in (0, 1)) and all_finished(app))
    await pilot.press("ctrl+s")
    await pilot.press(*name, "enter")
    await wait_until(pilot, lambda: app.recorder.saved_path is not None)


async def test_save_writes_the_session_under_its_name(make_app, tmp_path):
    app = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await chat_and_save(app, pilot)
        path = app.recorder.saved_path
    assert path == tmp_path / "sessions" / "my-comparison.json"
    session = load_session(path)
    assert session.name == "my comparison" and session.turns == 2
    assert [pane.spec for pane in session.panes] == ["scripted:a", "scripted:b"]
    assert not list((tmp_path / "sessions").glob("*.journal.jsonl"))  # everything saved: journal removed


async def test_unsaved_session_stays_as_a_journal(make_app, tmp_path):
    app = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press(*"kept", "enter")
        await wait_until(pilot, lambda: replies(app, 0) and all_finished(app))
        journal = app.recorder.journal_path
        assert journal.exists()
    assert load_session(journal).turns == 1


async def test_browse_and_play_back_instantly(make_app, tmp_path):
    (tmp_path / "sessions").mkdir()
    (tmp_path / "sessions" / "broken.json").write_text('{"format": "workbench.session", "version": 1')
    app = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await chat_and_save(app, pilot)
        await pilot.press("ctrl+o")
        browser = app.screen
        assert isinstance(browser, SessionBrowser)
        await wait_until(pilot, lambda: browser.loaded)  # the folder is read off the UI thread
        assert [s.name for s in browser.summaries] == ["my comparison"]
        assert "broken.json" in str(browser.query_one("#problems").content)
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, PlaybackScreen))
        playback = app.screen
        assert isinstance(playback, PlaybackScreen)
        await wait_until(pilot, lambda: playback.finished)
        panes = list(playback.query(ChatPane).results(ChatPane))
        assert [p.title for p in panes] == ["1 scripted", "2 scripted"]
        for pane in panes:
            (view,) = pane.query(ReplyView).results(ReplyView)
            assert view.prompt == "alpha beta" and view.text == "alpha beta" and view.outcome == "done"
        assert set(playback.graph_data.latency) == {"1 scripted", "2 scripted"}
        await pilot.press("escape")
        assert isinstance(app.screen, SessionBrowser)


async def test_rerun_shows_recorded_and_new_answers_side_by_side(make_app, tmp_path):
    app = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await chat_and_save(app, pilot)
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: isinstance(app.screen, SessionBrowser) and app.screen.loaded)
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, RerunScreen))
        rerun = app.screen
        assert isinstance(rerun, RerunScreen)
        await wait_until(pilot, lambda: rerun.result is not None)
        result = rerun.result
        assert len(result.comparisons) == 2
        assert all(c.new.text == c.recorded.text == "alpha beta" for c in result.comparisons)
        ids = [p.id for p in rerun.query(ChatPane).results(ChatPane)]
        assert [i.split("-")[0] for i in ids] == ["rec", "new", "rec", "new"]
        for pane in rerun.query(ChatPane).results(ChatPane):
            (view,) = pane.query(ReplyView).results(ReplyView)
            assert view.text == "alpha beta" and view.outcome == "done"
        # The re-run used the app's own actors (same specs): no second copy was made.
        assert rerun.owned == []
        assert result.path is not None and load_session(result.path).turns == 2
