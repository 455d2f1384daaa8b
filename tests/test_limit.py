"""The global concurrency limit: changes while work runs, counts, FIFO, cancellation, and a stress run."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from workbench.actors import Actor, ConcurrencyLimit, LimitSnapshot, Message, global_limit
from workbench.errors import MessageCancelled

BOUND_S = 60.0  # generous: only a hang would reach it


async def settle() -> None:
    """Let every ready task run (admissions resolve on the next loop turns)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_counts_running_and_waiting() -> None:
    limit = ConcurrencyLimit(2)
    snapshots: list[LimitSnapshot] = []
    limit.on_change(snapshots.append)
    await limit.acquire()
    await limit.acquire()
    waiter = asyncio.create_task(limit.acquire())
    await settle()
    assert (limit.running, limit.waiting) == (2, 1)
    assert limit.snapshot() == LimitSnapshot(2, 2, 1)
    limit.release()
    await settle()
    assert waiter.done() and (limit.running, limit.waiting) == (2, 0)
    limit.release()
    limit.release()
    assert (limit.running, limit.waiting) == (0, 0)
    assert snapshots[-1] == LimitSnapshot(2, 0, 0)
    assert max(s.waiting for s in snapshots) == 1


async def test_raising_the_limit_admits_waiters_at_once() -> None:
    limit = ConcurrencyLimit(1)
    await limit.acquire()
    waiters = [asyncio.create_task(limit.acquire()) for _ in range(3)]
    await settle()
    assert limit.waiting == 3
    limit.set_limit(3)
    await settle()
    assert [w.done() for w in waiters] == [True, True, False]
    assert (limit.running, limit.waiting) == (3, 1)
    limit.set_limit(4)
    await settle()
    assert all(w.done() for w in waiters) and limit.running == 4
    for _ in range(4):
        limit.release()


async def test_lowering_never_interrupts_and_after_draining_never_exceeds() -> None:
    limit = ConcurrencyLimit(4)
    for _ in range(4):
        await limit.acquire()
    limit.set_limit(2)
    assert limit.running == 4  # running work is not interrupted
    waiter = asyncio.create_task(limit.acquire())
    await settle()
    limit.release()  # 3 running, still above the new limit: the waiter stays waiting
    await settle()
    assert not waiter.done() and limit.running == 3
    limit.release()  # 2 running: still at the limit
    await settle()
    assert not waiter.done()
    limit.release()  # 1 running: now there is room
    await settle()
    assert waiter.done() and limit.running == 2
    limit.release()
    limit.release()
    assert limit.running == 0


async def test_waiters_are_admitted_first_come_first_served() -> None:
    limit = ConcurrencyLimit(1)
    await limit.acquire()
    order: list[int] = []

    async def take(index: int) -> None:
        await limit.acquire()
        order.append(index)

    tasks = []
    for index in range(5):
        tasks.append(asyncio.create_task(take(index)))
        await settle()
    for _ in range(5):
        limit.release()
        await settle()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    limit.release()
    # A newcomer does not jump ahead of someone already waiting.
    await limit.acquire()
    first = asyncio.create_task(take(10))
    await settle()
    limit.release()  # the slot goes to `first`, even before it resumes
    second = asyncio.create_task(take(11))
    await asyncio.wait_for(first, BOUND_S)
    await settle()
    assert not second.done()
    limit.release()
    await asyncio.wait_for(second, BOUND_S)
    assert order[-2:] == [10, 11]
    limit.release()


async def test_a_cancelled_waiter_leaves_the_queue_and_takes_no_slot() -> None:
    limit = ConcurrencyLimit(1)
    await limit.acquire()
    cancelled = asyncio.create_task(limit.acquire())
    behind = asyncio.create_task(limit.acquire())
    await settle()
    assert limit.waiting == 2
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert limit.waiting == 1
    limit.release()
    await asyncio.wait_for(behind, BOUND_S)
    assert limit.running == 1 and limit.waiting == 0
    limit.release()
    assert limit.running == 0


async def test_a_waiter_cancelled_in_the_instant_it_was_admitted_hands_its_slot_on() -> None:
    limit = ConcurrencyLimit(1)
    await limit.acquire()
    admitted = asyncio.create_task(limit.acquire())
    behind = asyncio.create_task(limit.acquire())
    await settle()
    limit.release()  # admits `admitted` (its future resolves) ...
    admitted.cancel()  # ... and it is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await admitted
    await asyncio.wait_for(behind, BOUND_S)
    assert limit.running == 1
    limit.release()
    assert limit.running == 0


def test_validation_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="between 1 and 64, not 0"):
        ConcurrencyLimit(0)
    limit = ConcurrencyLimit(2)
    with pytest.raises(ValueError, match="not 65"):
        limit.set_limit(65)
    with pytest.raises(TypeError, match="integer"):
        limit.set_limit(2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="integer"):
        limit.set_limit(True)
    assert limit.limit == 2
    with pytest.raises(RuntimeError, match="more often than acquire"):
        limit.release()


def test_the_global_limit_is_one_shared_instance() -> None:
    assert global_limit() is global_limit()
    assert 1 <= global_limit().limit <= 64


async def test_actors_share_a_limit() -> None:
    limit = ConcurrencyLimit(1)
    gate = asyncio.Event()

    class Waiter(Actor):
        async def handle_wait(self, message: Message) -> str:
            await gate.wait()
            return self.name

    first, second = Waiter("a", limit=limit), Waiter("b", limit=limit)
    replies = [first.send("wait"), second.send("wait")]
    await settle()
    assert (limit.running, limit.waiting) == (1, 1)
    unlimited = first.send("wait", limited=False)  # queued behind a's first message, not the limit
    gate.set()
    assert await asyncio.gather(*replies, unlimited) == ["a", "b", "a"]
    assert limit.running == 0
    await asyncio.gather(first.stop(), second.stop())


# ----- the stress test the issue asks for -------------------------------------------------------------
class Busy(Actor):
    """Does a little asynchronous 'work'; records the in-flight count and the limit at every start."""

    def __init__(self, name: str, limit: ConcurrencyLimit, tracker: dict[str, Any]) -> None:
        super().__init__(name, limit=limit)
        self.tracker = tracker

    async def handle_work(self, message: Message) -> int:
        tracker = self.tracker
        tracker["in_flight"] += 1
        tracker["starts"].append((tracker["in_flight"], self.limit.running, self.limit.limit))
        try:
            for _ in range(message.payload["steps"]):
                await asyncio.sleep(0)
            if message.payload["fail"]:
                raise ValueError("scripted failure")
            return message.payload["index"]
        finally:
            tracker["in_flight"] -= 1


async def stress(actors_count: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    limit = ConcurrencyLimit(rng.randint(1, 8))
    tracker: dict[str, Any] = {"in_flight": 0, "starts": []}
    admissions: list[LimitSnapshot] = []
    previous = [limit.snapshot()]

    def on_change(snapshot: LimitSnapshot) -> None:
        if snapshot.running > previous[0].running:  # a slot was just granted
            admissions.append(snapshot)
        previous[0] = snapshot

    limit.on_change(on_change)
    actors = [Busy(f"busy-{i}", limit, tracker) for i in range(actors_count)]
    done = asyncio.Event()

    async def move_limit() -> None:
        while not done.is_set():
            limit.set_limit(rng.randint(1, 8))
            for _ in range(rng.randint(1, 5)):
                await asyncio.sleep(0)

    mover = asyncio.create_task(move_limit())
    replies = []
    to_cancel = []
    for index in range(500):
        payload = {"index": index, "steps": rng.randint(0, 6), "fail": index % 23 == 0}
        reply = actors[index % actors_count].send("work", payload)
        replies.append(reply)
        if index % 17 == 0:
            to_cancel.append(reply)
        if index % 10 == 0:
            await asyncio.sleep(0)
    for reply in to_cancel:
        reply.cancel()
        await asyncio.sleep(0)
    outcomes = await asyncio.wait_for(asyncio.gather(*replies, return_exceptions=True), BOUND_S)
    done.set()
    await mover
    await asyncio.wait_for(asyncio.gather(*(actor.stop() for actor in actors)), BOUND_S)
    return {
        "outcomes": outcomes,
        "replies": replies,
        "starts": tracker["starts"],
        "admissions": admissions,
        "limit": limit,
    }


@pytest.mark.parametrize("actors_count", [5, 10])
async def test_stress_500_messages_while_the_limit_moves(actors_count: int) -> None:
    run = await stress(actors_count, seed=1234 + actors_count)
    outcomes = run["outcomes"]
    # Every message ended: a result, an error or a cancellation, nothing else.
    results = [o for o in outcomes if isinstance(o, int)]
    errors = [o for o in outcomes if isinstance(o, ValueError)]
    cancelled = [o for o in outcomes if isinstance(o, MessageCancelled)]
    assert len(results) + len(errors) + len(cancelled) == 500
    assert all(reply.done() for reply in run["replies"])
    assert results and errors and cancelled
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, int):
            assert outcome == index
    # Every admission happened with the number running within the limit in force at that moment.
    assert run["admissions"]
    assert all(snapshot.running <= snapshot.limit for snapshot in run["admissions"])
    # At every start, what really runs is within the slots granted, and those fit a limit that was in force.
    assert len(run["starts"]) >= len(results) + len(errors)
    assert all(in_flight <= running <= 8 for in_flight, running, _ in run["starts"])
    peak = max(in_flight for in_flight, _, _ in run["starts"])
    assert peak > 1  # the limit really let work overlap
    if actors_count == 10:
        assert peak > 5  # limits above 5 mattered
    assert run["limit"].running == 0 and run["limit"].waiting == 0


async def test_a_failing_listener_breaks_neither_the_limit_nor_the_actors() -> None:
    limit = ConcurrencyLimit(1)
    seen: list[LimitSnapshot] = []

    def broken(snapshot: LimitSnapshot) -> None:
        raise RuntimeError("UI bug")

    limit.on_change(broken)
    limit.on_change(seen.append)

    class Echo(Actor):
        async def handle_echo(self, message: Message) -> Any:
            return message.payload

    actor = Echo(limit=limit)
    assert await asyncio.wait_for(actor.send("echo", 1), BOUND_S) == 1
    limit.set_limit(2)
    assert limit.limit == 2 and limit.running == 0
    assert seen and seen[-1] == LimitSnapshot(2, 0, 0)  # later listeners still hear every change
    await actor.stop()
