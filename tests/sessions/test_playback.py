"""SessionPlayer timing on virtual time (no wall clock), and transcript assembly."""

from __future__ import annotations

import asyncio
import math

import pytest

from workbench.metrics.request import RequestMetrics
from workbench.runtimes.types import ChatMessage
from workbench.sessions.playback import SessionPlayer, history_messages, transcript
from workbench.sessions.schema import (
    CancelledEvent,
    ChatSession,
    ChunkEvent,
    DoneEvent,
    ErrorEvent,
    PaneRecord,
    PromptEvent,
    SampleEvent,
)

SETTLE = 20  # loop turns that let a waiting task run as far as it can


class VirtualTime:
    """A clock that only moves when told. `sleep(d)` is recorded and ends once the clock has moved d
    past the moment it was asked; with `auto`, every sleep moves the clock itself."""

    def __init__(self, *, auto: bool = False) -> None:
        self.now = 0.0
        self.auto = auto
        self.requested: list[float] = []
        self._moved = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.requested.append(seconds)
        if self.auto:
            self.now += seconds
            await asyncio.sleep(0)
            return
        deadline = self.now + seconds
        while self.now < deadline - 1e-9:
            self._moved.clear()
            await self._moved.wait()

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        self._moved.set()
        await settle()


async def settle() -> None:
    for _ in range(SETTLE):
        await asyncio.sleep(0)


def prompt(t: float, pane: str, text: str, cid: str | None) -> PromptEvent:
    return PromptEvent(t=t, pane=pane, correlation_id=cid, message=ChatMessage(role="user", content=text))


def timed_session() -> ChatSession:
    """Events at 0, 1, 3, 3, 7 seconds."""
    return ChatSession(id="s1", panes=[PaneRecord(id="a", spec="scripted:echo")], events=[
        prompt(0.0, "a", "hi", "c1"),
        ChunkEvent(t=1.0, pane="a", correlation_id="c1", text="Hel"),
        ChunkEvent(t=3.0, pane="a", correlation_id="c1", text="lo"),
        SampleEvent(t=3.0, pane="a", rss_bytes=10, cpu_percent=5.0),
        DoneEvent(t=7.0, pane="a", correlation_id="c1"),
    ])


async def collect(player: SessionPlayer, speed: float | None = None) -> list[float]:
    return [event.t async for event in player.play(speed)]


@pytest.mark.parametrize("speed", [1.0, 4.0, 0.5])
async def test_each_event_comes_at_its_time_divided_by_speed(speed: float) -> None:
    time = VirtualTime(auto=True)
    player = SessionPlayer(timed_session(), clock=time.clock, sleep=time.sleep)
    assert await collect(player, speed) == [0.0, 1.0, 3.0, 3.0, 7.0]
    assert time.requested == pytest.approx([1.0 / speed, 2.0 / speed, 4.0 / speed])
    assert time.now == pytest.approx(7.0 / speed)
    assert player.position == pytest.approx(7.0)


async def test_instant_playback_never_waits() -> None:
    time = VirtualTime(auto=True)
    player = SessionPlayer(timed_session(), clock=time.clock, sleep=time.sleep)
    kinds = [event.kind async for event in player.play(math.inf)]
    assert kinds == ["prompt", "chunk", "chunk", "sample", "done"]
    assert time.requested == []
    assert player.position == 7.0


async def test_events_out_of_order_in_the_file_play_in_time_order() -> None:
    session = timed_session()
    session.events.reverse()
    time = VirtualTime(auto=True)
    assert await collect(SessionPlayer(session, clock=time.clock, sleep=time.sleep)) == [0.0, 1.0, 3.0, 3.0, 7.0]


async def test_speed_change_between_events_applies_to_the_next_wait() -> None:
    time = VirtualTime(auto=True)
    player = SessionPlayer(timed_session(), clock=time.clock, sleep=time.sleep)
    seen = []
    async for event in player.play(1.0):
        seen.append(event.t)
        if event.t == 1.0:
            player.set_speed(4.0)
    assert seen == [0.0, 1.0, 3.0, 3.0, 7.0]
    assert time.requested == pytest.approx([1.0, 0.5, 1.0])


async def test_speed_change_in_the_middle_of_a_wait_keeps_the_time_already_played() -> None:
    time = VirtualTime()
    player = SessionPlayer(timed_session(), clock=time.clock, sleep=time.sleep)
    events = player.play(1.0)
    assert (await anext(events)).t == 0.0
    waiting = asyncio.ensure_future(anext(events))  # the 1 s wait for the first chunk
    await settle()
    await time.advance(0.6)
    assert not waiting.done() and player.position == pytest.approx(0.6)
    player.set_speed(2.0)  # 0.4 s of session time left: 0.2 s at 2x
    await settle()
    await time.advance(0.2)
    assert (await waiting).t == 1.0
    assert time.requested == pytest.approx([1.0, 0.2])
    player.set_speed(math.inf)
    assert [event.t async for event in events] == [3.0, 3.0, 7.0]
    await events.aclose()


async def test_from_instant_back_to_real_time_resumes_from_the_last_event() -> None:
    time = VirtualTime(auto=True)
    player = SessionPlayer(timed_session(), clock=time.clock, sleep=time.sleep)
    async for event in player.play(math.inf):
        if event.t == 1.0:
            player.set_speed(1.0)
    assert time.requested == pytest.approx([2.0, 4.0])


async def test_pause_holds_playback_until_resume() -> None:
    time = VirtualTime()
    player = SessionPlayer(timed_session(), clock=time.clock, sleep=time.sleep)
    events = player.play(1.0)
    await anext(events)
    waiting = asyncio.ensure_future(anext(events))
    await time.advance(0.25)
    player.pause()
    assert player.paused
    await time.advance(100.0)  # time passes, nothing plays
    assert not waiting.done() and player.position == pytest.approx(0.25)
    player.resume()
    await settle()
    assert not waiting.done()  # 0.75 s still to wait
    await time.advance(0.75)
    assert (await waiting).t == 1.0
    assert time.requested[-1] == pytest.approx(0.75)
    await events.aclose()


async def test_cancel_stops_at_once_even_mid_wait() -> None:
    time = VirtualTime()
    player = SessionPlayer(timed_session(), clock=time.clock, sleep=time.sleep)
    events = player.play(1.0)
    await anext(events)
    waiting = asyncio.ensure_future(anext(events))
    await settle()
    player.cancel()
    with pytest.raises(StopAsyncIteration):
        await waiting
    assert player.cancelled and player.position == 0.0


async def test_paused_player_can_be_cancelled() -> None:
    time = VirtualTime()
    player = SessionPlayer(timed_session(), clock=time.clock, sleep=time.sleep)
    events = player.play(1.0)
    await anext(events)
    player.pause()
    waiting = asyncio.ensure_future(anext(events))
    await settle()
    player.cancel()
    with pytest.raises(StopAsyncIteration):
        await waiting


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan])
async def test_speed_must_be_positive(bad: float) -> None:
    player = SessionPlayer(timed_session())
    with pytest.raises(ValueError, match="positive"):
        player.set_speed(bad)
    with pytest.raises(ValueError, match="positive"):
        await anext(player.play(bad))


async def test_real_clock_playback_of_a_short_session_finishes() -> None:
    """The default clock and sleep: a 7 s session at 1000x plays through (no timing asserted)."""
    assert await collect(SessionPlayer(timed_session()), 1000.0) == [0.0, 1.0, 3.0, 3.0, 7.0]


# ----- transcript --------------------------------------------------------------------------------------
def metrics(cid: str) -> RequestMetrics:
    return RequestMetrics(correlation_id=cid, ttft_s=0.1, e2e_s=0.5, output_tokens=4)


def two_pane_session() -> ChatSession:
    return ChatSession(id="s2", panes=[PaneRecord(id="a", spec="x:1"), PaneRecord(id="b", spec="y:2"),
                                       PaneRecord(id="idle", spec="z:3")], events=[
        prompt(0.0, "a", "first", "a1"),
        prompt(0.1, "b", "other pane", "b1"),
        ChunkEvent(t=0.2, pane="a", correlation_id="a1", thinking="hmm "),
        ChunkEvent(t=0.3, pane="b", correlation_id="b1", text="B says"),
        ChunkEvent(t=0.4, pane="a", correlation_id="a1", text="Para"),
        ChunkEvent(t=0.5, pane="a", correlation_id="a1", text="graph", thinking="ok"),
        DoneEvent(t=0.6, pane="a", correlation_id="a1", metrics=metrics("a1"), finish_reason="length"),
        ErrorEvent(t=0.7, pane="b", correlation_id="b1", error="model crashed", error_type="RuntimeProcessError"),
        prompt(1.0, "a", "second", "a2"),
        ChunkEvent(t=1.1, pane="a", correlation_id="a2", text="partial"),
        CancelledEvent(t=1.2, pane="a", correlation_id="a2"),
        prompt(2.0, "a", "third", None),  # an old file without correlation ids
        ChunkEvent(t=2.1, pane="a", text="no id"),
        DoneEvent(t=2.2, pane="a"),
        prompt(3.0, "b", "never answered", "b2"),
        ChunkEvent(t=3.1, pane="b", correlation_id="b2", text="cut "),
        ChunkEvent(t=3.2, pane="b", correlation_id="zz", text="stray"),  # an id no prompt had: latest turn
    ])


def test_transcript_reassembles_each_panes_turns() -> None:
    turns = transcript(two_pane_session())
    assert list(turns) == ["a", "b", "idle"] and turns["idle"] == []
    a = turns["a"]
    assert [(t.index, t.prompt.text, t.text, t.status) for t in a] == [
        (0, "first", "Paragraph", "done"), (1, "second", "partial", "cancelled"), (2, "third", "no id", "done"),
    ]
    assert a[0].thinking == "hmm ok" and a[0].finish_reason == "length"
    assert a[0].metrics is not None and a[0].metrics.output_tokens == 4
    assert (a[0].t, a[0].ended_t) == (0.0, 0.6)
    assert a[1].metrics is None and not a[1].ok
    b = turns["b"]
    assert [(t.text, t.status, t.error, t.error_type) for t in b] == [
        ("B says", "error", "model crashed", "RuntimeProcessError"), ("cut stray", "unfinished", None, None),
    ]


def test_history_keeps_only_answered_chat_turns() -> None:
    turns = transcript(two_pane_session())["a"]
    history = history_messages(turns)
    assert [(m.role, m.text) for m in history] == [
        ("user", "first"), ("assistant", "Paragraph"), ("user", "third"), ("assistant", "no id"),
    ]
    turns[2].operation = "generate"
    assert len(history_messages(turns)) == 2

