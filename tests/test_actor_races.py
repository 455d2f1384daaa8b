"""Races in the actor core: a cancel at any moment of a message's life, the state after a queued
message is cancelled, overlapping stop/restart calls, and the process-wide event listeners."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from tests.support.scripted import ScriptedActor
from tests.test_actors import BOUND_S, Worker, wait_until
from workbench.actors import (
    Actor,
    ActorCrashed,
    ActorEvent,
    ActorState,
    ConcurrencyLimit,
    Message,
    RestartPolicy,
    Supervisor,
)
from workbench.actors import events
from workbench.errors import MessageCancelled

FINAL_KINDS = ("done", "error", "cancelled")


class CountingWorker(Worker):
    """Counts starts and stops and remembers which task ran each start, to see reloads and workers."""

    def __init__(self, *, start_steps: int = 0, stop_delay_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.starts = 0
        self.stops = 0
        self.start_steps = start_steps
        self.stop_delay_s = stop_delay_s
        self.workers: list[asyncio.Task[Any]] = []

    async def on_start(self) -> None:
        self.starts += 1
        task = asyncio.current_task()
        assert task is not None
        self.workers.append(task)
        for _ in range(self.start_steps):  # a load that takes a few event-loop steps
            await asyncio.sleep(0)
        await super().on_start()

    async def on_stop(self) -> None:
        self.stops += 1
        await asyncio.sleep(self.stop_delay_s)

    async def handle_crash(self, message: Message) -> None:
        raise ActorCrashed("model process died")

    def live_workers(self) -> int:
        return sum(1 for task in self.workers if not task.done())


def final_events(actor: Actor) -> Counter[str | None]:
    """How many final events each correlation id got."""
    seen: Counter[str | None] = Counter()

    def count(event: ActorEvent) -> None:
        if event.kind in FINAL_KINDS:
            seen[event.correlation_id] += 1

    actor.on("*", count)
    return seen


@pytest.mark.parametrize("operation,payload", [("echo", "hi"), ("count", 3)])
@pytest.mark.parametrize("start_steps", [0, 3])
async def test_a_cancel_at_each_early_step_after_send_settles_the_reply_once(
    operation: str, payload: Any, start_steps: int
) -> None:
    """Issue 11: `send`, N loop steps, `cancel()`: the reply settles (never hangs), exactly one final
    event, the actor ends idle, and the model is not loaded again."""
    actor = CountingWorker(start_steps=start_steps)
    finals = final_events(actor)
    for steps in range(12):
        reply = actor.send(operation, payload, stream=operation == "count")
        for _ in range(steps):
            await asyncio.sleep(0)
        reply.cancel()
        try:
            await asyncio.wait_for(reply.result(), BOUND_S)
        except MessageCancelled:
            pass
        assert reply.done()
        await wait_until(lambda: actor.state == ActorState.IDLE, 2.0)
        assert finals[reply.correlation_id] == 1, f"cancel after {steps} steps"
        assert actor.current is None and actor.queued == 0
    assert actor.starts == 1  # the worker never died, so on_start never ran again
    assert await asyncio.wait_for(actor.send("echo", "after"), BOUND_S) == "after"
    assert actor.live_workers() == 1
    await actor.stop()


async def test_a_cancelled_queued_message_leaves_the_actor_idle_once_the_running_one_ends() -> None:
    """Issue 10: the state follows the messages really waiting, not the mailbox's leftovers."""
    actor = CountingWorker()
    running = actor.send("block", "first")
    queued = actor.send("echo", "never")
    await actor.entered.wait()
    assert actor.state == ActorState.BUSY
    queued.cancel()
    assert actor.queued == 0
    actor.gate.set()
    assert await running == "opened"
    assert actor.state == ActorState.IDLE  # at once, as the running reply settles
    await asyncio.sleep(0.02)
    assert actor.state == ActorState.IDLE
    await actor.stop()


async def test_two_restarts_and_a_stop_at_once_never_give_one_mailbox_two_workers() -> None:
    actor = CountingWorker(stop_delay_s=0.02)
    assert await actor.send("echo", 1) == 1
    await asyncio.gather(actor.restart(), actor.restart())
    await actor.wait_ready()
    assert actor.live_workers() == 1
    assert actor.stops == actor.starts - 1  # every worker but the live one was stopped, once
    assert await actor.send("echo", 2) == 2
    await asyncio.gather(actor.stop(), actor.stop(), actor.restart())
    await actor.wait_ready()
    assert actor.live_workers() == 1 and actor.state == ActorState.IDLE
    assert actor.stops == actor.starts - 1
    await actor.stop()
    assert actor.live_workers() == 0 and actor.stops == actor.starts


async def test_a_manual_restart_during_the_backoff_cancels_the_automatic_one() -> None:
    actor = CountingWorker()
    supervisor = Supervisor(RestartPolicy(backoff_s=0.1))
    supervisor.watch(actor)
    with pytest.raises(ActorCrashed):
        await actor.send("crash")
    assert actor.state == ActorState.FAILED
    await supervisor.restart(actor)  # a person presses restart during the backoff
    await actor.wait_ready()
    await asyncio.sleep(0.25)  # past the backoff
    assert actor.restarts == 1 and actor.starts == 2
    assert actor.live_workers() == 1
    assert await actor.send("echo", "once") == "once"
    await supervisor.stop_all()


async def test_a_direct_restart_overlapping_the_automatic_one_restarts_once() -> None:
    actor = CountingWorker(stop_delay_s=0.1)
    supervisor = Supervisor(RestartPolicy(backoff_s=0.02))
    supervisor.watch(actor)
    with pytest.raises(ActorCrashed):
        await actor.send("crash")
    await actor.restart()  # still stopping when the automatic restart's backoff ends
    await asyncio.sleep(0.2)
    assert actor.restarts == 1 and actor.stops == 1 and actor.starts == 2
    assert actor.live_workers() == 1
    await supervisor.stop_all()


async def test_a_stop_during_the_backoff_is_not_undone_by_the_supervisor() -> None:
    actor = CountingWorker()
    supervisor = Supervisor(RestartPolicy(backoff_s=0.05))
    supervisor.watch(actor)
    with pytest.raises(ActorCrashed):
        await actor.send("crash")
    await actor.stop()
    await asyncio.sleep(0.15)
    assert actor.state == ActorState.STOPPED and actor.restarts == 0
    assert actor.live_workers() == 0


async def test_global_listeners_see_every_actors_message_lifecycle() -> None:
    seen: list[ActorEvent] = []

    def broken(event: ActorEvent) -> None:
        raise RuntimeError("listener bug")

    remove = events.add_global_listener(seen.append)
    remove_broken = events.add_global_listener(broken)
    try:
        first, second = CountingWorker(), CountingWorker()
        streamed = first.send("count", 2, stream=True)
        echoed = second.send("echo", "x")
        assert await streamed == [0, 1]
        assert await echoed == "x"
    finally:
        remove()
        remove_broken()
    lifecycle = [e.kind for e in seen if e.correlation_id == streamed.correlation_id]
    assert lifecycle == ["queued", "started", "chunk", "chunk", "done"]
    started = next(e for e in seen if e.kind == "started" and e.correlation_id == echoed.correlation_id)
    assert started.actor == second.name and isinstance(started.data, float) and started.data >= 0
    count = len(seen)
    await first.send("echo", "unseen")
    assert len(seen) == count  # removed listeners are no longer called
    await first.stop()
    await second.stop()


class CountingScripted(ScriptedActor):
    """The in-process test runtime (worker thread, cancel_event), counting its model loads."""

    loads = 0

    def load(self, progress: Any) -> None:
        type(self).loads += 1
        super().load(progress)


async def test_a_cancel_at_each_early_step_settles_once_on_an_in_process_runtime() -> None:
    """The same walk over an in-process runtime, where the work runs on a worker thread."""
    CountingScripted.loads = 0
    actor = CountingScripted(delay_s=0.0005, limit=ConcurrencyLimit(2))
    finals = final_events(actor)
    for steps in range(40):
        reply = actor.chat("one two three four five six")
        for _ in range(steps):
            await asyncio.sleep(0)
        reply.cancel()
        try:
            await asyncio.wait_for(reply.result(), BOUND_S)
        except MessageCancelled:
            pass
        await wait_until(lambda: actor.state == ActorState.IDLE, 2.0)
        assert finals[reply.correlation_id] == 1, f"cancel after {steps} steps"
    assert CountingScripted.loads == 1
    assert (await asyncio.wait_for(actor.chat("still here"), BOUND_S)).text == "still here"
    await actor.stop()
