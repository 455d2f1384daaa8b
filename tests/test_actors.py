"""The actor core: ordering, errors, correlation ids, cancellation, stop/restart and supervision."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.support.scripted import ScriptedActor
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
from workbench.errors import ActorFailed, ActorStopped, MessageCancelled

BOUND_S = 10.0  # generous: only a hang would reach it


class Worker(Actor):
    """A test actor whose handlers record what runs, and when, so ordering and exclusivity show."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(limit=kwargs.pop("limit", None) or ConcurrencyLimit(8), **kwargs)
        self.active = 0
        self.max_active = 0
        self.ran: list[Any] = []
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.interrupted = 0
        self.fail_start = False

    async def on_start(self) -> None:
        if self.fail_start:
            raise OSError("model file is unreadable")

    async def handle_echo(self, message: Message) -> Any:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(0)  # give other senders a chance to interleave
            self.ran.append(message.payload)
            return message.payload
        finally:
            self.active -= 1

    async def handle_fail(self, message: Message) -> None:
        self.ran.append(message.payload)
        raise ValueError(f"bad input {message.payload!r}")

    async def handle_crash(self, message: Message) -> None:
        raise ActorCrashed("model process died")

    async def handle_block(self, message: Message) -> str:
        """Runs until the gate opens; records an interruption."""
        self.entered.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.interrupted += 1
            raise
        self.ran.append(message.payload)
        return "opened"

    async def handle_count(self, message: Message) -> AsyncIterator[int]:
        for number in range(message.payload):
            await asyncio.sleep(0)
            yield number


def collect(actor: Actor, kinds: tuple[str, ...] = ("started", "chunk", "done", "error", "cancelled")) -> list[ActorEvent]:
    seen: list[ActorEvent] = []
    for kind in kinds:
        actor.on(kind, seen.append)
    return seen


async def wait_until(predicate: Any, bound: float = BOUND_S) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), bound)


async def test_many_concurrent_senders_keep_their_order_and_never_overlap() -> None:
    actor = Worker()

    async def sender(index: int) -> list[Any]:
        replies = []
        for number in range(25):
            replies.append(actor.send("echo", (index, number)))
            if number % 3 == 0:
                await asyncio.sleep(0)  # senders interleave in the mailbox
        return [await reply for reply in replies]

    results = await asyncio.wait_for(asyncio.gather(*(sender(i) for i in range(20))), BOUND_S)
    for index, values in enumerate(results):
        assert values == [(index, n) for n in range(25)]
    assert len(actor.ran) == 500
    for index in range(20):
        assert [n for i, n in actor.ran if i == index] == list(range(25))
    assert actor.max_active == 1
    await actor.stop()


async def test_error_fails_only_its_caller_and_the_next_message_runs() -> None:
    actor = Worker()
    seen = collect(actor)
    before = actor.send("echo", "before")
    failing = actor.send("fail", "x")
    after = actor.send("echo", "after")
    assert await before == "before"
    with pytest.raises(ValueError, match="bad input 'x'"):
        await failing
    assert await after == "after"
    errors = [event for event in seen if event.kind == "error"]
    assert len(errors) == 1
    assert errors[0].correlation_id == failing.correlation_id
    assert isinstance(errors[0].data, ValueError)
    assert actor.errors == 1 and actor.state == ActorState.IDLE
    await actor.stop()


async def test_every_event_carries_its_messages_correlation_id() -> None:
    actor = Worker()
    seen = collect(actor)
    streamed = actor.send("count", 3, stream=True)
    chunks = [chunk async for chunk in streamed]
    assert chunks == [0, 1, 2]
    failed = actor.send("fail", "y", correlation_id="my-own-id")
    with pytest.raises(ValueError):
        await failed
    blocked = actor.send("block", "z")
    await actor.entered.wait()
    blocked.cancel()
    with pytest.raises(MessageCancelled):
        await blocked

    def kinds(reply: Any) -> list[str]:
        return [event.kind for event in seen if event.correlation_id == reply.correlation_id]

    assert kinds(streamed) == ["started", "chunk", "chunk", "chunk", "done"]
    assert failed.correlation_id == "my-own-id"
    assert kinds(failed) == ["started", "error"]
    assert kinds(blocked) == ["started", "cancelled"]
    assert all(event.correlation_id for event in seen)
    assert [event.data for event in seen if event.kind == "chunk"] == [0, 1, 2]
    await actor.stop()


async def test_cancel_a_queued_message_it_never_runs() -> None:
    actor = Worker()
    seen = collect(actor)
    running = actor.send("block", "first")
    queued = actor.send("echo", "never")
    later = actor.send("echo", "later")
    await actor.entered.wait()
    assert actor.queued == 2
    assert queued.cancel() is True
    assert actor.queued == 1
    with pytest.raises(MessageCancelled):
        await queued
    actor.gate.set()
    assert await running == "opened"
    assert await later == "later"
    assert "never" not in actor.ran
    events_for_queued = [event.kind for event in seen if event.correlation_id == queued.correlation_id]
    assert events_for_queued == ["cancelled"]
    assert queued.cancel() is False  # already finished
    await actor.stop()


async def test_cancel_a_running_coroutine_interrupts_it_and_the_actor_goes_on() -> None:
    actor = Worker()
    running = actor.send("block", "stuck")
    following = actor.send("echo", "next")
    await actor.entered.wait()
    running.cancel()
    with pytest.raises(MessageCancelled):
        await asyncio.wait_for(running, BOUND_S)
    assert actor.interrupted == 1
    assert await asyncio.wait_for(following, BOUND_S) == "next"
    await actor.stop()


class CountingScripted(ScriptedActor):
    """Counts the words the worker thread really produced, to see how far it ran after a cancel."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.produced = 0
        self.thread_names: set[str] = set()

    def _words(self, text: str) -> Iterator[str]:
        for word in super()._words(text):
            self.produced += 1
            self.thread_names.add(threading.current_thread().name)
            yield word


async def test_cancel_a_running_in_process_stream_stops_within_one_token() -> None:
    actor = CountingScripted(delay_s=0.01, limit=ConcurrencyLimit(2))
    seen = collect(actor)
    prompt = " ".join(f"w{i}" for i in range(200))
    reply = actor.generate(prompt)
    received = 0
    produced_at_cancel = 0
    with pytest.raises(MessageCancelled):  # the stream ends early with a cancellation the caller sees
        async for chunk in reply:
            received += 1
            if received == 3:
                produced_at_cancel = actor.produced
                reply.cancel()
    assert received == 3
    assert actor.produced <= produced_at_cancel + 1  # the worker stopped at its next token
    assert [e.kind for e in seen if e.correlation_id == reply.correlation_id][-1] == "cancelled"
    assert all(name != threading.current_thread().name for name in actor.thread_names)
    completion = await asyncio.wait_for(actor.generate("still serving"), BOUND_S)
    assert completion.text == "still serving"
    await actor.stop()


async def test_a_caller_task_cancelled_while_awaiting_cancels_its_message() -> None:
    actor = Worker()
    seen = collect(actor)
    reply = actor.send("block", "waiting")
    task = asyncio.create_task(reply.result())
    await actor.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(reply.done)
    assert actor.interrupted == 1
    assert [e.kind for e in seen if e.correlation_id == reply.correlation_id] == ["started", "cancelled"]
    assert await actor.send("echo", 1) == 1
    await actor.stop()


async def test_breaking_out_of_async_for_cancels_the_stream() -> None:
    actor = CountingScripted(delay_s=0.01, limit=ConcurrencyLimit(2))
    seen = collect(actor)
    reply = actor.generate(" ".join(f"w{i}" for i in range(200)))
    async for chunk in reply:
        assert chunk.text == "w0"
        break
    await wait_until(reply.done)
    assert [e.kind for e in seen if e.correlation_id == reply.correlation_id][-1] == "cancelled"
    assert actor.produced < 200  # it stopped early
    assert (await actor.generate("ok then")).text == "ok then"
    await actor.stop()


async def test_stop_with_drain_runs_queued_work_first() -> None:
    actor = Worker()
    replies = [actor.send("echo", n) for n in range(5)]
    await actor.stop(drain=True)
    assert [await reply for reply in replies] == list(range(5))
    assert actor.state == ActorState.STOPPED
    with pytest.raises(ActorStopped, match="restart it"):
        actor.send("echo", 6)


async def test_stop_without_drain_cancels_running_and_queued_work() -> None:
    actor = Worker()
    running = actor.send("block", "r")
    queued = [actor.send("echo", n) for n in range(3)]
    await actor.entered.wait()
    await asyncio.wait_for(actor.stop(drain=False), BOUND_S)
    for reply in (running, *queued):
        with pytest.raises(MessageCancelled):
            await reply
    assert actor.ran == []
    assert actor.interrupted == 1
    assert actor.state == ActorState.STOPPED


class SlowStarter(Actor):
    """An actor whose start waits on a gate, as a model load does; `on_stopping` can end it at once."""

    def __init__(self, *, abandon: bool) -> None:
        super().__init__(limit=ConcurrencyLimit(8))
        self.abandon = abandon
        self.loading = asyncio.Event()
        self.load_ended = asyncio.Event()
        self.stopping_calls = 0

    async def on_start(self) -> None:
        self.loading.set()
        await self.load_ended.wait()

    async def on_stopping(self) -> bool:
        self.stopping_calls += 1
        if self.state == ActorState.STARTING and self.abandon:
            self.load_ended.set()  # the "load" is killed
            return True
        return False

    async def handle_echo(self, message: Message) -> Any:
        return message.payload


async def test_on_stopping_runs_before_stop_waits_and_may_drop_the_queue() -> None:
    actor = SlowStarter(abandon=True)
    queued = actor.send("echo", 1)
    await asyncio.wait_for(actor.loading.wait(), BOUND_S)
    await asyncio.wait_for(actor.stop(), BOUND_S)  # would wait for the gate forever without the hook
    assert actor.stopping_calls == 1 and actor.state == ActorState.STOPPED
    with pytest.raises(MessageCancelled):
        await queued  # dropped, not drained: the hook said nothing is left to run it on


async def test_on_stopping_runs_at_the_start_of_restart() -> None:
    actor = SlowStarter(abandon=True)
    actor.start()
    await asyncio.wait_for(actor.loading.wait(), BOUND_S)
    await asyncio.wait_for(actor.restart(), BOUND_S)
    assert actor.stopping_calls == 1 and actor.restarts == 1
    await asyncio.wait_for(actor.wait_ready(), BOUND_S)  # the gate is open now: the fresh start ends
    assert await actor.send("echo", "b") == "b"
    await actor.stop()


async def test_on_stopping_default_keeps_draining() -> None:
    actor = SlowStarter(abandon=False)
    actor.load_ended.set()
    replies = [actor.send("echo", n) for n in range(3)]
    await actor.stop(drain=True)
    assert [await reply for reply in replies] == [0, 1, 2] and actor.stopping_calls == 1


async def test_restart_after_stop_serves_again() -> None:
    actor = Worker()
    states: list[Any] = []
    actor.on("state", lambda event: states.append(event.data))
    assert await actor.send("echo", "a") == "a"
    await actor.stop()
    await actor.restart()
    assert await actor.send("echo", "b") == "b"
    assert actor.restarts == 1
    assert ActorState.STOPPED in states and states[-1] == ActorState.IDLE
    await actor.stop()


async def test_failed_start_answers_with_actor_failed_until_restarted() -> None:
    actor = Worker()
    actor.fail_start = True
    with pytest.raises(ActorFailed, match="model file is unreadable"):
        await actor.wait_ready()
    assert actor.state == ActorState.FAILED
    with pytest.raises(ActorFailed, match="restart it"):
        await actor.send("echo", "while failed")
    actor.fail_start = False  # the file is fixed
    await actor.restart()
    assert await actor.send("echo", "healed") == "healed"
    await actor.stop()


async def test_supervisor_restarts_an_actor_whose_start_failed() -> None:
    actor = Worker()
    actor.fail_start = True
    supervisor = Supervisor(RestartPolicy(max_restarts=3, backoff_s=0.01))
    supervisor.watch(actor)
    starts: list[Any] = []

    def on_state(event: ActorEvent) -> None:
        starts.append(event.data)
        if event.data == ActorState.FAILED:
            actor.fail_start = False  # the next start works

    actor.on("state", on_state)
    actor.start()
    await wait_until(lambda: actor.restarts >= 1 and actor.state == ActorState.IDLE)
    assert ActorState.FAILED in starts
    assert await actor.send("echo", "healed") == "healed"
    assert actor.restarts == 1
    await supervisor.stop_all()


async def test_supervisor_gives_up_after_its_budget() -> None:
    actor = Worker()
    actor.fail_start = True
    supervisor = Supervisor(RestartPolicy(max_restarts=2, window_s=60, backoff_s=0.01))
    supervisor.watch(actor)
    actor.start()
    await wait_until(lambda: actor.name in supervisor.gave_up)
    assert actor.restarts == 2
    assert actor.state == ActorState.FAILED
    with pytest.raises(ActorFailed):
        await actor.send("echo", "no")
    # A person asking for a restart clears the give-up.
    actor.fail_start = False
    await supervisor.restart(actor)
    assert actor.name not in supervisor.gave_up
    assert await actor.send("echo", "yes") == "yes"
    await supervisor.stop_all()


async def test_actor_crashed_turns_failed_and_the_supervisor_restarts_it() -> None:
    actor = Worker()
    supervisor = Supervisor(RestartPolicy(backoff_s=0.01))
    supervisor.watch(actor)
    states: list[Any] = []
    actor.on("state", lambda event: states.append(event.data))
    with pytest.raises(ActorCrashed):
        await actor.send("crash")
    assert actor.state == ActorState.FAILED
    await wait_until(lambda: actor.restarts == 1 and actor.state == ActorState.IDLE)
    assert ActorState.FAILED in states
    assert await actor.send("echo", "back") == "back"
    await supervisor.stop_all()


async def test_scripted_crash_fails_the_in_process_actor() -> None:
    actor = ScriptedActor(limit=ConcurrencyLimit(2))
    with pytest.raises(ActorCrashed):
        await actor.generate("please CRASH now")
    assert actor.state == ActorState.FAILED
    with pytest.raises(ActorFailed):
        await actor.generate("anything")
    await actor.restart()
    assert (await actor.generate("fine again")).text == "fine again"
    await actor.stop()


async def test_a_failing_event_handler_does_not_break_the_actor() -> None:
    actor = Worker()

    def broken(event: ActorEvent) -> None:
        raise RuntimeError("listener bug")

    actor.on("started", broken)
    seen: list[ActorEvent] = []
    unsubscribe = actor.on("done", seen.append)
    assert await actor.send("echo", 1) == 1
    unsubscribe()
    assert await actor.send("echo", 2) == 2
    assert len(seen) == 1
    await actor.stop()


async def test_a_stopped_actor_does_not_start_again_by_itself() -> None:
    actor = Worker()
    assert await actor.send("echo", 1) == 1
    await actor.stop()
    with pytest.raises(ActorStopped):
        await actor.wait_ready()
    with pytest.raises(ActorStopped):
        actor.start()
    assert actor.state == ActorState.STOPPED
    await actor.stop()  # stopping twice is harmless
    assert actor.state == ActorState.STOPPED


async def test_cancel_a_message_waiting_for_a_concurrency_slot() -> None:
    shared = ConcurrencyLimit(1)
    holder, waiter = Worker(limit=shared), Worker(limit=shared)
    held = holder.send("block", "holds the only slot")
    await holder.entered.wait()
    waiting = waiter.send("echo", "waits")
    while shared.waiting == 0:
        await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(MessageCancelled):
        await waiting
    assert shared.waiting == 0 and shared.running == 1
    assert waiter.ran == []
    holder.gate.set()
    assert await held == "opened"
    assert await waiter.send("echo", "now") == "now"
    assert shared.running == 0
    await asyncio.gather(holder.stop(), waiter.stop())
