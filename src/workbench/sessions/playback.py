"""Playing a saved session back as it happened, and reading it as turns.

- `SessionPlayer(session).play(speed)` yields the session's events (prompts, chunks, ends, resource
  samples, panes) each at its recorded time divided by the speed; it can be paused, resumed, sped up
  or cancelled while it plays. The UI feeds the events to its panes and graphs; `workbench replay`
  prints them.
- `transcript(session)` re-assembles each pane's turns (prompt, answer, thinking, how it ended, and
  its metrics) from the events; `history_messages(turns)` is the chat context those turns give the
  next one. The UI, the CLI and re-runs all read a session through these.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from workbench.metrics.request import RequestMetrics
from workbench.runtimes.types import ChatMessage, GenerationOptions
from workbench.sessions.schema import (
    CancelledEvent,
    ChatSession,
    ChunkEvent,
    DoneEvent,
    ErrorEvent,
    PaneEvent,
    PaneRecord,
    PromptEvent,
    SessionEvent,
)

TurnStatus = Literal["done", "error", "cancelled", "unfinished"]
CHAT_OPERATIONS = ("chat", "think")


@dataclass(slots=True)
class Turn:
    """One prompt sent to a pane and what came back. `unfinished`: the session ended (or crashed)
    before the answer did."""

    pane: str
    index: int
    prompt: ChatMessage
    operation: str = "chat"
    options: GenerationOptions = field(default_factory=GenerationOptions)
    correlation_id: str | None = None
    t: float = 0.0
    text: str = ""
    thinking: str = ""
    status: TurnStatus = "unfinished"
    error: str | None = None
    error_type: str | None = None
    metrics: RequestMetrics | None = None
    finish_reason: str | None = None
    ended_t: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "done"


def transcript(session: ChatSession) -> dict[str, list[Turn]]:
    """Each pane's turns in order, keyed by pane id (every pane, in pane order, even without turns).

    Chunks and ends are matched to their prompt by correlation id; an event without one goes to the
    pane's latest turn.
    """
    return transcript_events({pane.id: pane for pane in session.all_panes()}, session.events)


def transcript_events(panes: dict[str, PaneRecord], events: Iterable[SessionEvent]) -> dict[str, list[Turn]]:
    """`transcript` over events as they stream (`stream_session`): memory follows the text, not the
    number of events. `panes` (the header's, by id) gains the panes opened later, as they come."""
    turns: dict[str, list[Turn]] = {pane_id: [] for pane_id in panes}
    by_id: dict[str, Turn] = {}
    for event in events:
        if isinstance(event, PaneEvent):
            panes[event.record.id] = event.record  # as `ChatSession.all_panes`: a later record wins
            turns.setdefault(event.record.id, [])
            continue
        if isinstance(event, PromptEvent):
            pane_turns = turns.setdefault(event.pane, [])
            turn = Turn(event.pane, len(pane_turns), event.message, event.operation, event.options,
                        event.correlation_id, event.t)
            pane_turns.append(turn)
            if event.correlation_id:
                by_id[event.correlation_id] = turn
            continue
        if not isinstance(event, ChunkEvent | DoneEvent | ErrorEvent | CancelledEvent):
            continue
        target = by_id.get(event.correlation_id or "")
        if target is None:
            target = _latest(turns.get(event.pane, []))
        if target is None:
            continue
        if isinstance(event, ChunkEvent):
            target.text += event.text
            target.thinking += event.thinking
            continue
        target.ended_t = event.t
        if isinstance(event, DoneEvent):
            target.status, target.metrics, target.finish_reason = "done", event.metrics, event.finish_reason
        elif isinstance(event, ErrorEvent):
            target.status, target.error, target.error_type = "error", event.error, event.error_type or None
        else:
            target.status = "cancelled"
    return turns


def _latest(turns: list[Turn]) -> Turn | None:
    return turns[-1] if turns else None


def history_messages(turns: Sequence[Turn]) -> list[ChatMessage]:
    """The conversation that earlier chat turns give the next one: each answered turn's prompt and
    answer. Turns that failed, were cancelled or never ended are left out, as is thinking."""
    messages: list[ChatMessage] = []
    for turn in turns:
        if turn.operation in CHAT_OPERATIONS and turn.ok:
            messages.append(turn.prompt)
            messages.append(ChatMessage(role="assistant", content=turn.text))
    return messages


# ----- playback -------------------------------------------------------------------------------------
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
_EPSILON_S = 1e-6


def _check_speed(speed: float) -> float:
    speed = float(speed)
    if math.isnan(speed) or speed <= 0:
        raise ValueError(f"playback speed must be a positive number (or inf for instant), not {speed}")
    return speed


class SessionPlayer:
    """Plays a session's events at their recorded times divided by `speed` (inf: all at once).

    `clock` and `sleep` are injectable so tests can drive playback on virtual time. Control methods
    (`pause`, `resume`, `set_speed`, `cancel`) may be called from any task on the same loop while
    `play` runs; they take effect at once, including in the middle of a wait.

    `SessionPlayer.streaming(events)` plays events as an iterator gives them (`stream_session`), in
    recorded order and without keeping them, so a huge session plays in constant memory; its
    `duration` is then the time of the latest event played.
    """

    def __init__(self, session: ChatSession, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self.session: ChatSession | None = session
        self.events: list[SessionEvent] = sorted(session.events, key=lambda event: event.t)  # stable
        self._source: Iterable[SessionEvent] = self.events
        self._latest_t = 0.0
        self._clock = clock
        self._sleep = sleep
        self._speed = 1.0
        self._paused = False
        self._cancelled = False
        self._position = 0.0  # session seconds played, as of `_anchor`
        self._anchor = clock()
        self._changed = asyncio.Event()

    @classmethod
    def streaming(
        cls, events: Iterable[SessionEvent], *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> SessionPlayer:
        player = cls(ChatSession(id="stream"), clock=clock, sleep=sleep)
        player.session = None
        player._source = events
        return player

    # ----- state ------------------------------------------------------------------------------------
    @property
    def duration(self) -> float:
        return self.events[-1].t if self.events else self._latest_t

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def position(self) -> float:
        """Session seconds played so far (for a progress bar)."""
        if self._paused or self._cancelled or math.isinf(self._speed):
            return self._position
        return min(self.duration, self._position + (self._clock() - self._anchor) * self._speed)

    # ----- control ----------------------------------------------------------------------------------
    def set_speed(self, speed: float) -> None:
        speed = _check_speed(speed)
        self._rebase()
        self._speed = speed
        self._changed.set()

    def pause(self) -> None:
        if not self._paused:
            self._rebase()
            self._paused = True
            self._changed.set()

    def resume(self) -> None:
        if self._paused:
            self._anchor = self._clock()
            self._paused = False
            self._changed.set()

    def cancel(self) -> None:
        """Stop playback at once: `play` yields nothing more."""
        self._rebase()
        self._cancelled = True
        self._changed.set()

    # ----- playing ----------------------------------------------------------------------------------
    async def play(self, speed: float | None = None) -> AsyncIterator[SessionEvent]:
        """Yield every event when its time comes; returns early when cancelled."""
        if speed is not None:
            self._speed = _check_speed(speed)
        self._anchor = self._clock()
        for event in self._source:
            self._latest_t = max(self._latest_t, event.t)
            await self._wait_until(event.t)
            if self._cancelled:
                return
            if math.isinf(self._speed):  # no clock runs at infinite speed: the played events set the position
                self._position = max(self._position, event.t)
                self._anchor = self._clock()
            yield event

    def _rebase(self) -> None:
        position = self.position
        self._position = position
        self._anchor = self._clock()

    async def _wait_until(self, target: float) -> None:
        while not self._cancelled:
            if self._paused:
                self._changed.clear()
                await self._changed.wait()
                continue
            if math.isinf(self._speed):
                return
            remaining = (target - self.position) / self._speed
            if remaining <= _EPSILON_S:
                return
            self._changed.clear()
            await self._sleep_or_change(remaining)

    async def _sleep_or_change(self, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, changed):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
