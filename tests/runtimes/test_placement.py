"""`process` placement with real worker processes and the real SmolLM2 (transformers and torch).

Both actors load once for the module, at the same time, in workers of their own. Tests that kill a
worker let the supervisor restart it, so the next test finds it serving again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from tests.support.placed_checks import (
    GREEDY,
    LONG,
    QUESTION,
    assert_cancel_stops_the_worker_within_a_token,
    graphed_memory,
)
from workbench.actors.actor import ActorState
from workbench.actors.supervisor import RestartPolicy, Supervisor
from workbench.errors import MessageCancelled, WorkbenchError
from workbench.runtimes.inprocess import InProcessModelRuntimeActor
from workbench.runtimes.placement import WorkerDied, WorkerSpec, create_placement
from workbench.runtimes.placement import wire
from workbench.runtimes.registry import create_actor, using_placement


class Pair:
    def __init__(self, transformers: InProcessModelRuntimeActor, torch: InProcessModelRuntimeActor) -> None:
        self.transformers = transformers
        self.torch = torch
        self.supervisor = Supervisor(RestartPolicy(max_restarts=5, backoff_s=0.05))
        self.supervisor.watch(transformers)
        self.supervisor.watch(torch)


@pytest.fixture(scope="module")
async def pair() -> AsyncIterator[Pair]:
    # transformers with the machine's thread count, as the shared thread-placed fixture has, so their
    # greedy answers can be compared; torch on one thread (its own setting, in its own process).
    transformers = create_actor("transformers:smollm2", placement="process")
    torch = create_actor("torch:smollm2", placement="process", threads=1)
    assert isinstance(transformers, InProcessModelRuntimeActor) and isinstance(torch, InProcessModelRuntimeActor)
    transformers.start()
    torch.start()
    await asyncio.gather(transformers.wait_ready(), torch.wait_ready())
    yield Pair(transformers, torch)
    await asyncio.gather(transformers.stop(drain=False), torch.stop(drain=False))


def worker_pid(actor: InProcessModelRuntimeActor) -> int:
    assert actor.placement is not None
    pid = actor.placement.describe()["pid"]
    assert isinstance(pid, int)
    return pid


async def aenumerate(iterable):  # noqa: ANN001, ANN201
    index = 0
    async for item in iterable:
        yield index, item
        index += 1


async def wait_for(condition, timeout_s: float = 120.0) -> None:  # noqa: ANN001
    """Wait (not a timing assertion) until `condition()` holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def _spawned(process: psutil.Process) -> bool:
    try:
        return "multiprocessing.spawn" in " ".join(process.cmdline())
    except psutil.Error:
        return False


# ----- the wire -------------------------------------------------------------------------------------------
def test_garbage_from_a_worker_is_a_clear_error_naming_it() -> None:
    with pytest.raises(wire.WireError, match="not json"):
        wire.decode_from_worker(b"\x00not json at all")
    with pytest.raises(wire.WireError, match="chunk"):
        wire.decode_from_worker(b'{"kind": "chunk", "id": 1, "chunk": {"text": 5}}')
    with pytest.raises(wire.WireError, match="kind"):
        wire.decode_from_worker(b'{"kind": "launch-missiles"}')
    message = wire.decode_from_worker(b'{"kind": "chunk", "id": 3, "chunk": {"text": "Paris", "tokens": 1}}')
    assert isinstance(message, wire.ChunkMessage) and message.chunk.text == "Paris"


def test_errors_cross_as_their_own_type() -> None:
    rebuilt = wire.rebuild_error(wire.failure_from(ValueError("the prompt is 9000 tokens"), 1))
    assert type(rebuilt) is ValueError and str(rebuilt) == "the prompt is 9000 tokens"
    odd = wire.rebuild_error(wire.Failure(id=1, error_type="CudaError", error_module="somelib", message="boom"))
    assert isinstance(odd, RuntimeError) and "CudaError: boom" in str(odd)


def test_an_unknown_placement_is_refused_with_the_valid_names() -> None:
    spec = WorkerSpec(factory="workbench.runtimes.torch:TorchWorker", model="smollm2")
    with pytest.raises(WorkbenchError, match="unknown placement 'moon'.*process.*thread"):
        create_placement("moon", spec)
    with pytest.raises(WorkbenchError, match="unknown placement"), using_placement("moon"):
        pass


def test_commands_place_models_in_processes_library_code_on_threads() -> None:
    assert create_actor("torch:smollm2").placement_name == "thread"  # type: ignore[attr-defined]
    with using_placement("process"):
        assert create_actor("torch:smollm2").placement_name == "process"  # type: ignore[attr-defined]
        assert create_actor("torch:smollm2", placement="thread").placement_name == "thread"  # type: ignore[attr-defined]
        create_actor("ollama:llama3.2")  # servers ignore the placement


# ----- real workers -----------------------------------------------------------------------------------------
async def test_each_model_has_its_own_process_and_memory(pair: Pair) -> None:
    pids = {worker_pid(pair.transformers), worker_pid(pair.torch)}
    assert len(pids) == 2 and os.getpid() not in pids
    assert all(psutil.Process(pid).ppid() == os.getpid() for pid in pids)
    first, second = await pair.transformers.stats(), await pair.torch.stats()
    for stats, actor in ((first, pair.transformers), (second, pair.torch)):
        memory = stats.memory
        assert memory is not None and memory.pid == worker_pid(actor) and not memory.shared
        assert memory.placement == "process" and stats.placement == {"kind": "process", "pid": memory.pid,
                                                                      "node": memory.node}
        assert memory.baseline_rss_bytes and memory.rss_bytes and memory.uss_bytes
        assert memory.model_uss_bytes is not None and memory.model_uss_bytes > 20 * 2**20  # a 135M model's weights
        target = actor.memory_target()
        assert target is not None and target.pid == memory.pid
    # transformers keeps fp32 weights; the torch engine its Q4_1 blocks: the models' own memory differs.
    assert first.memory.model_uss_bytes != second.memory.model_uss_bytes  # type: ignore[union-attr]
    assert first.details["torch_threads"] == os.cpu_count() and second.details["torch_threads"] == 1


async def test_greedy_output_through_a_process_equals_a_thread(pair: Pair) -> None:
    thread = create_actor("torch:smollm2", placement="thread", threads=1)  # as the process one: 1 thread
    try:
        await thread.wait_ready()
        options = GREEDY | {"max_tokens": 24}
        in_thread = [chunk async for chunk in thread.think(QUESTION, options=options)]
        in_process = [chunk async for chunk in pair.torch.think(QUESTION, options=options)]
    finally:
        await thread.stop()
    assert [(c.text, c.thinking, c.tokens) for c in in_process] == [(c.text, c.thinking, c.tokens) for c in in_thread]
    assert in_process[-1].metrics.output_tokens == in_thread[-1].metrics.output_tokens == 24
    assert len([c for c in in_process if c.text or c.thinking]) > 10


async def test_cancel_mid_stream_stops_the_worker_within_a_token(pair: Pair) -> None:
    await assert_cancel_stops_the_worker_within_a_token(pair.torch)


async def test_stats_are_answered_while_a_stream_runs(pair: Pair) -> None:
    reply = pair.torch.generate(LONG, options=GREEDY | {"max_tokens": 40})
    stream = aiter(reply)
    await anext(stream)
    stats = await asyncio.wait_for(pair.torch.stats(), timeout=5.0)
    assert stats.state == "busy" and stats.parameters and stats.memory is not None
    reply.cancel()
    with pytest.raises(MessageCancelled):
        async for _ in stream:
            pass


async def test_kill_9_mid_stream_fails_the_request_then_the_supervisor_restarts_the_worker(pair: Pair) -> None:
    actor, other = pair.torch, pair.transformers
    old_pid = worker_pid(actor)
    restarts = actor.restarts
    placement = actor.placement
    assert placement is not None
    reply = actor.generate(LONG, options=GREEDY | {"max_tokens": 300})
    with pytest.raises(WorkerDied, match=r"worker process for torch:smollm2 died: signal 9"):
        async for _ in reply:
            if psutil.Process(old_pid).status() != psutil.STATUS_ZOMBIE:
                os.kill(old_pid, signal.SIGKILL)
    assert actor.state in (ActorState.FAILED, ActorState.STOPPING, ActorState.CREATED, ActorState.STARTING)
    with pytest.raises(WorkerDied, match="died: signal 9"):  # the dead worker's placement says so...
        await placement.stats()
    gone = await placement.memory()  # ...and keeps the baseline it had, with no current figures
    assert gone is not None and gone.rss_bytes is None and gone.baseline_rss_bytes
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE
    # The other pane keeps answering while the supervisor reloads this one in a new worker.
    assert (await other.chat(QUESTION, options=GREEDY | {"max_tokens": 3})).metrics.output_tokens == 3
    await wait_for(lambda: actor.restarts > restarts and actor.state == ActorState.IDLE)
    assert worker_pid(actor) != old_pid
    assert "Paris" in (await actor.chat(QUESTION, options=GREEDY | {"max_tokens": 12})).text


async def test_a_worker_killed_while_idle_turns_its_actor_failed_and_is_restarted(pair: Pair) -> None:
    actor = pair.torch
    old_pid, restarts = worker_pid(actor), actor.restarts
    failed = asyncio.Event()
    unsubscribe = actor.on("state", lambda event: failed.set() if event.data == ActorState.FAILED else None)
    try:
        os.kill(old_pid, signal.SIGKILL)
        await asyncio.wait_for(failed.wait(), timeout=10)  # nobody had to ask it anything
    finally:
        unsubscribe()
    assert "died: signal 9" in str(actor.last_error)
    await wait_for(lambda: actor.restarts > restarts and actor.state == ActorState.IDLE)
    assert worker_pid(actor) != old_pid
    assert (await actor.chat(QUESTION, options=GREEDY | {"max_tokens": 2})).metrics.output_tokens == 2


async def test_a_hung_worker_is_killed_after_its_deadline(pair: Pair) -> None:
    actor = pair.torch  # the quicker of the two to reload
    placement = actor.placement
    old_pid = worker_pid(actor)
    restarts = actor.restarts
    placement.hang_timeout_s = 1.0  # type: ignore[union-attr]
    reply = actor.generate(LONG, options=GREEDY | {"max_tokens": 300})
    with pytest.raises(WorkerDied, match=r"worker process for torch:smollm2 hung: no message for 1 s"):
        async for index, _ in aenumerate(reply):
            if index == 0:
                os.kill(old_pid, signal.SIGSTOP)  # frozen: alive, but it says nothing more
    await wait_for(lambda: actor.restarts > restarts and actor.state == ActorState.IDLE)
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE
    assert actor.placement.hang_timeout_s == 300.0  # type: ignore[union-attr]  # a fresh worker, default deadline
    assert "Paris" in (await actor.chat(QUESTION, options=GREEDY | {"max_tokens": 12})).text


async def test_stop_during_a_load_kills_the_worker_at_once() -> None:
    actor = create_actor("transformers:smollm2", placement="process", threads=1)
    loading = asyncio.Event()
    actor.on("progress", lambda event: loading.set())
    actor.start()
    await asyncio.wait_for(loading.wait(), timeout=120)
    pid = worker_pid(actor)  # type: ignore[arg-type]
    queued = actor.chat(QUESTION)
    started = time.perf_counter()
    await actor.stop()
    assert time.perf_counter() - started < 3.0  # a load of this model takes far longer here
    assert actor.state == ActorState.STOPPED
    with pytest.raises((MessageCancelled, WorkbenchError)):
        await queued
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_restart_during_a_load_starts_a_fresh_worker_at_once() -> None:
    actor = create_actor("torch:smollm2", placement="process", threads=1)
    loading = asyncio.Event()
    actor.on("progress", lambda event: loading.set())
    actor.start()
    try:
        await asyncio.wait_for(loading.wait(), timeout=120)
        first = worker_pid(actor)  # type: ignore[arg-type]
        started = time.perf_counter()
        await actor.restart()
        assert time.perf_counter() - started < 3.0  # did not wait for the load to finish
        assert not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE
        await actor.wait_ready()
        assert worker_pid(actor) != first and actor.restarts == 1  # type: ignore[arg-type]
    finally:
        await actor.stop()


async def test_a_worker_exits_when_its_app_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        "import asyncio\n"
        "from workbench.runtimes.registry import create_actor\n"
        "async def main():\n"
        "    actor = create_actor('torch:smollm2', placement='process', threads=1)\n"
        "    loading = asyncio.Event()\n"
        "    actor.on('progress', lambda event: loading.set())\n"
        "    actor.start()\n"
        "    await loading.wait()\n"
        "    print(actor.placement.pid, flush=True)\n"
        "    await asyncio.sleep(600)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n"
    )
    app = await asyncio.create_subprocess_exec(sys.executable, str(script), stdout=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(app.stdout.readline(), timeout=120)  # type: ignore[union-attr]
        worker = psutil.Process(int(line))
        assert worker.ppid() == app.pid
    finally:
        app.kill()  # SIGKILL: the app gets no chance to stop its worker
        await app.wait()
    await wait_for(lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE, timeout_s=10)


async def test_a_benchmark_run_file_carries_each_actors_own_memory(pair: Pair, tmp_path: Path) -> None:
    from workbench.bench.runner import BenchmarkRunner
    from workbench.runtimes.types import ChatMessage
    from workbench.sessions.schema import BenchmarkConfig, BenchmarkPrompt
    from workbench.sessions.store import load_benchmark, save_benchmark

    config = BenchmarkConfig(actors=[], prompts="test", concurrency=[1], max_tokens=2, warmup=0)
    prompts = [BenchmarkPrompt(messages=[ChatMessage(role="user", content=QUESTION)])]
    run = await BenchmarkRunner(config, prompts=prompts, actors=[pair.transformers, pair.torch]).run()
    loaded = load_benchmark(save_benchmark(run, tmp_path / "run.json"))
    memory = {item.actor: item for item in loaded.actor_memory}
    assert set(memory) == {"transformers:smollm2", "torch:smollm2"}
    for actor in (pair.transformers, pair.torch):
        item = memory[actor.spec]
        assert item.pid == worker_pid(actor) and item.placement == "process" and not item.shared
        assert item.model_uss_bytes == item.uss_bytes - item.baseline_uss_bytes  # type: ignore[operator]
    assert memory["transformers:smollm2"].model_uss_bytes != memory["torch:smollm2"].model_uss_bytes


async def test_the_app_graphs_one_memory_series_per_worker(pair: Pair, tmp_path: Path) -> None:
    actors = {"transformers:smollm2": pair.transformers, "torch:smollm2": pair.torch}
    mib, panes = await graphed_memory(actors, tmp_path)
    assert len(mib) == 2, (mib.keys(), [(title, a.state, a.memory_target()) for title, a in panes.items()])
    assert len(set(mib)) == 2  # two labels
    assert len(set(mib.values())) == 2, mib  # two lines, not one curve drawn twice
    for title, actor in panes.items():
        worker_mib = psutil.Process(worker_pid(actor)).memory_info().rss / 2**20
        assert abs(mib[title] - worker_mib) < 0.2 * worker_mib, (title, mib, worker_mib)


async def test_no_worker_outlives_its_actor(pair: Pair) -> None:
    pids = [worker_pid(pair.transformers), worker_pid(pair.torch)]
    await asyncio.gather(pair.transformers.stop(), pair.torch.stop())
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not [p for p in psutil.Process().children(recursive=True) if _spawned(p)]
