"""Pilot tests for the main screen: sending, streaming, cancelling, errors, the slider, actor control,
themes."""

from __future__ import annotations

import json

from tests.app.conftest import wait_until
from workbench.actors.actor import ActorState
from workbench.app.main import WorkbenchApp
from workbench.app.screens.actors import ActorsScreen
from workbench.app.widgets.concurrency_slider import ConcurrencySlider
from workbench.app.widgets.reply_view import ReplyView


def replies(app: WorkbenchApp, index: int) -> list[ReplyView]:
    return list(app.panes[index].query(ReplyView).results(ReplyView))


def all_finished(app: WorkbenchApp) -> bool:
    return all(view.finished for pane in app.panes for view in pane.query(ReplyView).results(ReplyView))


async def test_enter_sends_to_the_selected_pane_only(make_app):
    app = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press(*"hello there friend", "enter")
        await wait_until(pilot, lambda: replies(app, 0) and all_finished(app))
        (view,) = replies(app, 0)
        assert view.text == "hello there friend"
        assert view.outcome == "done" and "tok/s" in view.figures
        assert replies(app, 1) == []
        assert [m.role for m in app.panes[0].history] == ["user", "assistant"]
        assert "TTFT" in app.panes[0].header_text()


async def test_second_binding_sends_to_every_pane_and_history_grows(make_app):
    app = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press(*"one two", "ctrl+t")
        await wait_until(pilot, lambda: all(replies(app, i) for i in (0, 1)) and all_finished(app))
        await pilot.press(*"three", "ctrl+t")
        await wait_until(pilot, lambda: all(len(replies(app, i)) == 2 for i in (0, 1)) and all_finished(app))
        for index in (0, 1):
            assert [v.text for v in replies(app, index)] == ["one two", "three"]
            assert [m.text for m in app.panes[index].history] == ["one two", "one two", "three", "three"]
        assert app.query_one("#prompt").value == ""


async def test_selecting_another_pane_moves_enter(make_app):
    app = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("alt+right", *"hi", "enter")
        await wait_until(pilot, lambda: replies(app, 1) and all_finished(app))
        assert replies(app, 0) == [] and app.panes[1].has_class("active")


async def test_escape_cancels_and_the_pane_stays_usable(make_app):
    app = make_app(delay_s=0.05)
    async with app.run_test(size=(160, 45)) as pilot:
        app.query_one("#prompt").value = " ".join(["word"] * 200)
        await pilot.press("enter")
        await wait_until(pilot, lambda: bool(replies(app, 0)) and replies(app, 0)[0].text != "")
        await pilot.press("escape")
        await wait_until(pilot, lambda: all_finished(app))
        assert replies(app, 0)[0].outcome == "cancelled"
        assert app.panes[0].history == []
        app.panes[0].actor.delay_s = 0.0
        await pilot.press(*"again", "enter")
        await wait_until(pilot, lambda: len(replies(app, 0)) == 2 and all_finished(app))
        assert replies(app, 0)[1].text == "again"


async def test_an_error_is_shown_plainly_and_the_next_prompt_works(make_app):
    app = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press(*"please FAIL now", "enter")
        await wait_until(pilot, lambda: replies(app, 0) and all_finished(app))
        assert replies(app, 0)[0].outcome == "error"
        assert "scripted failure" in replies(app, 0)[0].figures
        await pilot.press(*"fine", "enter")
        await wait_until(pilot, lambda: len(replies(app, 0)) == 2 and all_finished(app))
        assert replies(app, 0)[1].text == "fine"
        assert [m.text for m in app.panes[0].history] == ["fine", "fine"]


async def test_an_unavailable_runtime_shows_in_its_pane(make_app):
    app = make_app(("scripted:a", "nosuch:model"))
    async with app.run_test(size=(160, 45)) as pilot:
        broken = app.panes[1]
        assert broken.actor is None and "not available" in broken.slot.error
        assert broken.has_class("failed") or "unavailable" in broken.header_text()
        await pilot.press(*"hi", "ctrl+t")
        await wait_until(pilot, lambda: replies(app, 0) and all_finished(app) and replies(app, 1))
        assert replies(app, 0)[0].text == "hi"
        assert replies(app, 1)[0].outcome == "error"


async def test_slider_keys_change_the_global_limit(make_app, restore_limit):
    restore_limit.set_limit(2)
    app = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        slider = app.query_one(ConcurrencySlider)
        slider.focus()
        await pilot.press("right", "right")
        assert restore_limit.limit == 4 and slider.value == 4
        await pilot.press("minus")
        assert restore_limit.limit == 3
        await pilot.press("end")
        assert restore_limit.limit == 8
        await pilot.press("right")
        assert restore_limit.limit == 8
        await pilot.press("home")
        assert restore_limit.limit == 1
        assert "running 0 · waiting 0" in str(slider.render())


async def test_actor_status_stops_and_restarts_an_actor(make_app):
    app = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        actor = app.panes[0].actor
        await actor.wait_ready()
        await pilot.press("f2")
        assert isinstance(app.screen, ActorsScreen)
        await pilot.press("s")
        await wait_until(pilot, lambda: actor.state == ActorState.STOPPED)
        await pilot.press("r")
        await wait_until(pilot, lambda: actor.state == ActorState.IDLE)
        assert actor.restarts == 1
        await pilot.press("escape")
        await pilot.press(*"back again", "enter")
        await wait_until(pilot, lambda: replies(app, 0) and all_finished(app))
        assert replies(app, 0)[0].text == "back again"


async def test_theme_choice_is_remembered(make_app, isolated_settings):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        assert "workbench-dark" in app.available_themes and "workbench-light" in app.available_themes
        app.theme = "workbench-light"
        await pilot.pause()
    saved = json.loads((isolated_settings / "workbench" / "settings.json").read_text())
    assert saved["theme"] == "workbench-light"
    again = make_app()
    async with again.run_test(size=(120, 40)):
        assert again.theme == "workbench-light"


async def test_ctrl_b_opens_the_benchmark_screen_on_the_panes_actors(make_app):
    from workbench.app.screens.benchmark import BenchmarkScreen

    app = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("ctrl+b")
        await wait_until(pilot, lambda: isinstance(app.screen, BenchmarkScreen))
        assert [actor.name for actor in app.screen.actors] == ["scripted:a", "scripted:b"]
        bench_screen = app.screen
        await pilot.press("ctrl+r")  # the screen's Run, not the main screen's "as context"
        await wait_until(pilot, lambda: bench_screen.runner is not None or bench_screen.saved_path is not None)
        bench_screen.action_stop()
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, BenchmarkScreen))


async def test_without_an_ollama_server_a_notice_says_how_to_connect_one(make_app, monkeypatch):
    import socket

    from textual.widgets import Static

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    app = make_app(discover_ollama=True)
    async with app.run_test(size=(160, 45)) as pilot:
        notice = app.query_one("#notice", Static)
        await wait_until(pilot, lambda: notice.has_class("shown"))
        assert f"No Ollama server answers at http://127.0.0.1:{port}" in str(notice.render())
        assert notice.display and len(app.panes) == 2


async def test_keys_arriving_in_one_burst_send_the_whole_prompt(make_app):
    """A terminal delivers typed or injected keys in bursts; ctrl+t / ctrl+r right behind the text
    must see all of it (as priority app bindings they ran before the box had inserted the rest)."""
    from textual import events

    app = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        for text, key in (("Name three colors.", "ctrl+t"), ("Remember the number 7.", "ctrl+r")):
            for ch in text:
                app.post_message(events.Key(ch, ch))
            app.post_message(events.Key(key, None))
            await pilot.pause()
        await wait_until(pilot, lambda: len(replies(app, 0)) == 2 and replies(app, 1) and all_finished(app))
        assert [v.text for v in replies(app, 1)] == ["Name three colors."]  # the scripted actors echo
        sent, context = replies(app, 0)
        assert sent.text == "Name three colors."
        assert context.has_class("context") and context.prompt.endswith("Remember the number 7.")
        assert app.query_one("#prompt").value == ""
