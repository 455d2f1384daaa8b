"""A supervisor restarts actors that fail, within a budget, so one broken runtime heals itself
without a person stepping in, and a runtime that keeps failing is left failed rather than looping."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from workbench.actors import events
from workbench.actors.actor import Actor, ActorState
from workbench.actors.events import ActorEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    max_restarts: int = 3
    window_s: float = 60.0
    backoff_s: float = 0.5


class Supervisor:
    """Watches actors' state events and restarts an actor when it turns FAILED."""

    def __init__(self, policy: RestartPolicy | None = None, *, automatic: bool = True) -> None:
        self.policy = policy or RestartPolicy()
        self.automatic = automatic
        self.actors: dict[str, Actor] = {}
        self._history: dict[str, deque[float]] = {}
        self._unsubscribe: dict[str, object] = {}
        self._restarting: dict[str, asyncio.Task[None]] = {}  # waiting out their backoff
        self._tasks: set[asyncio.Task[None]] = set()  # every restart task, held until it ends
        self.gave_up: set[str] = set()

    def watch(self, actor: Actor) -> Actor:
        self.actors[actor.name] = actor
        self._history[actor.name] = deque()
        self._unsubscribe[actor.name] = actor.on(events.STATE, self._on_state)
        return actor

    def unwatch(self, actor: Actor) -> None:
        self._cancel_pending(actor.name)
        unsubscribe = self._unsubscribe.pop(actor.name, None)
        if callable(unsubscribe):
            unsubscribe()
        self.actors.pop(actor.name, None)

    async def restart(self, actor: Actor) -> None:
        """Restart now (a person asked for it): clears any earlier give-up and cancels an automatic
        restart still waiting out its backoff, so the actor restarts once, not twice. One already
        restarting is waited for (the actor serialises restarts)."""
        self.gave_up.discard(actor.name)
        self._cancel_pending(actor.name)
        await actor.restart()

    def _cancel_pending(self, name: str) -> None:
        task = self._restarting.pop(name, None)
        if task is not None:
            task.cancel()

    async def stop_all(self, *, drain: bool = False) -> None:
        for task in list(self._restarting.values()):
            task.cancel()
        await asyncio.gather(*(actor.stop(drain=drain) for actor in self.actors.values()), return_exceptions=True)

    def _on_state(self, event: ActorEvent) -> None:
        if not self.automatic or event.data != ActorState.FAILED:
            return
        actor = self.actors.get(event.actor)
        if actor is None or event.actor in self._restarting:
            return
        history = self._history[event.actor]
        now = time.monotonic()
        while history and now - history[0] > self.policy.window_s:
            history.popleft()
        if len(history) >= self.policy.max_restarts:
            if event.actor not in self.gave_up:
                log.warning("giving up on %s after %d restarts", event.actor, len(history))
                self.gave_up.add(event.actor)
            return
        history.append(now)
        delay = self.policy.backoff_s * (2 ** (len(history) - 1))
        task = asyncio.get_running_loop().create_task(self._restart_later(actor, delay))
        self._restarting[event.actor] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restart_later(self, actor: Actor, delay: float) -> None:
        """Wait out the backoff, then restart, unless someone restarted or stopped the actor meanwhile.
        Only the backoff is cancellable (`_restarting` holds the task until then): a restart under
        way is never cut in half."""
        try:
            await asyncio.sleep(delay)
        finally:
            if self._restarting.get(actor.name) is asyncio.current_task():
                del self._restarting[actor.name]
        if actor.state != ActorState.FAILED:
            return
        await actor.restart()
