"""The `ray` placement against a real local Ray instance, started once for this module on 127.0.0.1.

One `torch:smollm2` actor loads in a Ray actor for the module (one thread, one Ray CPU); tests that
kill it let the supervisor restart it, so the next test finds it serving again. Ray's own start
costs several seconds and about 1 GB of memory, which is why these tests live in a module of their own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest
import ray  # the `ray` extra; `make test` installs it, so a missing one fails here instead of skipping

from tests.support.placed_checks import (
    GREEDY,
    LONG,
    QUESTION,
    assert_cancel_stops_the_worker_within_a_token,
    graphed_memory,
)
from workbench.actors.actor import ActorState
from workbench.actors.supervisor import RestartPolicy, Supervisor
from workbench.errors import ActorFailed, MessageCancelled, RuntimeUnavailable, WorkbenchError
from workbench.runtimes.inprocess import InProcessModelRuntimeActor
from workbench.runtimes.placement import ModelWorker, WorkerDied, WorkerSpec, create_placement
from workbench.runtimes.placement import ray as ray_placement
from workbench.runtimes.registry import create_actor
from workbench.runtimes.types import Chunk, Usage
from workbench.sessions.recorder import SessionRecorder
from workbench.sessions.schema import PaneRecord, PlacedEvent
from workbench.sessions.store import load_session


@pytest.fixture(scope="module")
def local_ray() -> Iterator[ray_placement.RayConnection]:
    """A private Ray instance of this test process, bound to 127.0.0.1 (the placement checks it)."""
    connection = ray_placement.connect("local")
    yield connection
    ray_placement.disconnect()


class Placed:
    def __init__(self, actor: InProcessModelRuntimeActor) -> None:
        self.actor = actor
        self.supervisor = Supervisor(RestartPolicy(max_restarts=5, backoff_s=0.05))
        self.supervisor.watch(actor)


@pytest.fixture(scope="module")
async def placed(local_ray: ray_placement.RayConnection) -> AsyncIterator[Placed]:
    actor = create_actor("torch:smollm2", placement="ray", threads=1)
    assert isinstance(actor, InProcessModelRuntimeActor)
    actor.start()
    await actor.wait_ready()
    yield Placed(actor)
    await actor.stop(drain=False)


def host_pid(actor: InProcessModelRuntimeActor) -> int:
    assert actor.placement is not None
    pid = actor.placement.describe()["pid"]
    assert isinstance(pid, int)
    return pid


async def wait_for(condition, timeout_s: float = 180.0) -> None:  # noqa: ANN001
    """Wait (not a timing assertion) until `condition()` holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


# ----- without a cluster ----------------------------------------------------------------------------------
def test_coalescing_joins_deltas_and_keeps_the_final_chunk_apart() -> None:
    final = Chunk(done=True, finish_reason="stop", usage=Usage(input_tokens=3, output_tokens=4))
    merged = ray_placement.coalesce([
        Chunk(text="Pa", tokens=1), Chunk(text="ris", tokens=1), Chunk(thinking="hm", tokens=2), final,
    ])
    assert merged == [Chunk(text="Paris", thinking="hm", tokens=4), final]
    assert ray_placement.coalesce([Chunk(text="a", tokens=1), Chunk(text="b")]) == [Chunk(text="ab", tokens=None)]


def test_a_misspelt_option_is_refused_naming_it() -> None:
    spec = WorkerSpec(factory="workbench.runtimes.torch:TorchWorker", model="smollm2", label="torch:smollm2")
    with pytest.raises(WorkbenchError, match=r"bad ray placement options for torch:smollm2.*num_gpu"):
        create_placement("ray", spec, num_gpu=1)


def test_without_ray_the_placement_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when not installed
    with pytest.raises(RuntimeUnavailable, match=r"pip install -e '\.\[ray\]'"):
        ray_placement.import_ray()


def test_resources_default_to_the_thread_count() -> None:
    spec = WorkerSpec(factory="workbench.runtimes.torch:TorchWorker", model="smollm2", options={"threads": 3})
    assert create_placement("ray", spec).requirements() == {"CPU": 3.0}  # type: ignore[attr-defined]
    assert create_placement("ray", spec, num_cpus=1, num_gpus=0.5, resources={"tpu": 2}).requirements() == {  # type: ignore[attr-defined]
        "CPU": 1.0, "GPU": 0.5, "tpu": 2.0}


# ----- a real local Ray instance ---------------------------------------------------------------------
def test_the_local_instance_listens_on_loopback_only(local_ray: ray_placement.RayConnection) -> None:
    assert local_ray.started_local and local_ray.nodes == ["127.0.0.1"]
    listening = set()
    for process in psutil.Process().children(recursive=True):
        try:
            listening |= {c.laddr.ip for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            continue
    assert listening and listening <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening
    status = ray_placement.probe()
    assert status.installed and status.cluster.startswith("connected (local")


async def test_chat_and_stream_through_a_ray_actor(placed: Placed) -> None:
    actor = placed.actor
    where = actor.placement.describe()  # type: ignore[union-attr]
    assert where["kind"] == "ray" and where["node_ip"] == "127.0.0.1" and where["pid"] != os.getpid()
    # Ray nices its workers by default; the model must compete with the other placements on equal terms.
    assert psutil.Process(where["pid"]).nice() == psutil.Process().nice()
    chunks = [chunk async for chunk in actor.chat(QUESTION, options=GREEDY | {"max_tokens": 24})]
    assert len(chunks) > 2 and chunks[-1].done and chunks[-1].metrics is not None
    assert "Paris" in "".join(chunk.text for chunk in chunks)
    assert chunks[-1].metrics.output_tokens == sum(chunk.tokens or 0 for chunk in chunks[:-1])
    figures = actor.placement.figures  # type: ignore[union-attr]  # came with the stream's last batch
    assert figures.pid == where["pid"] and figures.cpu_percent > 0 and figures.rss_bytes > figures.baseline_rss_bytes
    completion = await actor.generate("Say hello.", options=GREEDY | {"max_tokens": 8})
    assert completion.text and completion.metrics.output_tokens <= 8


async def test_a_workers_own_error_fails_only_its_request_and_embed_works(placed: Placed) -> None:
    actor = placed.actor
    with pytest.raises(ValueError, match=r"the prompt is \d+ tokens; the model's context is"):
        await actor.generate("word " * 9000, options=GREEDY | {"max_tokens": 4})
    assert actor.state == ActorState.IDLE and actor.restarts == 0
    vectors = (await actor.embed(["Paris is in France.", "A dragon bakes bread."])).vectors
    assert len(vectors) == 2 and len(vectors[0]) == 576  # SmolLM2-135M's hidden size


async def test_greedy_output_through_ray_equals_a_thread(placed: Placed, local_ray: ray_placement.RayConnection) -> None:
    local = create_actor("torch:smollm2", placement="thread", threads=1)
    local.start()
    try:
        await local.wait_ready()
        options = GREEDY | {"max_tokens": 24}
        in_thread = (await local.chat(QUESTION, options=options)).text
        on_ray = (await placed.actor.chat(QUESTION, options=options)).text
    finally:
        await local.stop()
    assert on_ray == in_thread and "Paris" in on_ray


async def test_memory_is_the_ray_actors_own_process(placed: Placed) -> None:
    stats = await placed.actor.stats()
    memory = stats.memory
    assert memory is not None and memory.placement == "ray" and not memory.shared
    assert memory.pid == host_pid(placed.actor) != os.getpid()
    assert psutil.Process(memory.pid).is_running()
    assert memory.model_rss_bytes is not None and memory.model_rss_bytes > 50_000_000  # a ~100 MB model
    assert stats.parameters and stats.details["torch_threads"] == 1
    target = placed.actor.memory_target()  # on this machine: the live sampler reads the Ray actor's pid
    assert target is not None and target.pid == memory.pid


async def test_stats_are_answered_while_a_stream_runs(placed: Placed) -> None:
    reply = placed.actor.generate(LONG, options=GREEDY | {"max_tokens": 60})
    stream = aiter(reply)
    await anext(stream)
    stats = await asyncio.wait_for(placed.actor.stats(), timeout=5.0)
    assert stats.state == "busy" and stats.memory is not None
    reply.cancel()
    with pytest.raises(MessageCancelled):
        async for _ in stream:
            pass


async def test_cancel_mid_stream_stops_the_remote_worker(placed: Placed) -> None:
    await assert_cancel_stops_the_worker_within_a_token(placed.actor)


async def test_killing_the_ray_actor_mid_stream_fails_the_request_and_the_supervisor_restarts_it(
    placed: Placed, tmp_path: Path,
) -> None:
    actor = placed.actor
    recorder = SessionRecorder(tmp_path, "on ray", [PaneRecord(id="p1", spec=actor.spec)])
    recorder.attach("p1", actor)  # the session records where the model runs, and again after the restart
    old_pid = host_pid(actor)
    handle = actor.placement.handle  # type: ignore[union-attr]
    reply = actor.generate(LONG, options=GREEDY | {"max_tokens": 300})
    with pytest.raises(WorkerDied, match=r"ray actor for torch:smollm2 died: .*ray\.kill"):
        async for _ in reply:
            ray.kill(handle)
    await wait_for(lambda: actor.restarts >= 1 and actor.state == ActorState.IDLE)
    assert host_pid(actor) != old_pid
    assert "Paris" in (await actor.chat(QUESTION, options=GREEDY | {"max_tokens": 12})).text
    journal = load_session(recorder.journal_path)
    recorder.close()
    placed_events = [event for event in journal.events if isinstance(event, PlacedEvent)]
    assert [(event.placement, event.pid) for event in placed_events] == [("ray", old_pid), ("ray", host_pid(actor))]
    assert placed_events[-1].node == socket.gethostname() and placed_events[-1].details["node_ip"] == "127.0.0.1"


async def test_a_hung_ray_actor_is_killed_after_its_deadline_and_restarted(placed: Placed) -> None:
    actor = placed.actor
    old_pid, restarts = host_pid(actor), actor.restarts
    actor.placement.settings.hang_timeout_s = 1.0  # type: ignore[union-attr]  # this placement only
    reply = actor.generate(LONG, options=GREEDY | {"max_tokens": 300})
    with pytest.raises(WorkerDied, match=r"ray actor for torch:smollm2 hung: nothing for 1 s while answering; killed"):
        async for _ in reply:
            if psutil.Process(old_pid).status() != psutil.STATUS_STOPPED:
                os.kill(old_pid, signal.SIGSTOP)  # frozen: alive for Ray, but it says nothing more
    await wait_for(lambda: actor.restarts > restarts and actor.state == ActorState.IDLE)
    await wait_for(lambda: not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE)
    assert host_pid(actor) != old_pid
    assert "Paris" in (await actor.chat(QUESTION, options=GREEDY | {"max_tokens": 12})).text


async def test_a_request_no_node_can_hold_fails_at_once_with_the_nodes_resources(
    local_ray: ray_placement.RayConnection,
) -> None:
    # A long placement timeout: the failure must come from the feasibility check, not from waiting.
    actor = create_actor("torch:smollm2", placement="ray", threads=1,
                         placement_options={"num_gpus": 1, "placement_timeout_s": 600})
    actor.start()
    with pytest.raises(ActorFailed, match=r"Ray cannot place torch:smollm2: it needs \{CPU: 1, GPU: 1\} "
                                          r"and no node has that \(nodes: 127\.0\.0\.1: CPU \d+, GPU 0\)"):
        await actor.wait_ready()
    await actor.stop()


async def test_a_request_the_busy_cluster_cannot_hold_now_fails_after_its_timeout(placed: Placed) -> None:
    # The module's actor holds one of the instance's CPUs; this one wants them all.
    total = int(ray.cluster_resources()["CPU"])
    actor = create_actor("torch:smollm2", placement="ray", threads=total,
                         placement_options={"placement_timeout_s": 1.0})
    actor.start()
    with pytest.raises(ActorFailed, match=rf"Ray did not place torch:smollm2 within 1 s: it needs \{{CPU: {total}\}}"):
        await actor.wait_ready()
    await actor.stop()
    assert placed.actor.state == ActorState.IDLE


# ----- the command line -----------------------------------------------------------------------------
def test_ray_address_implies_the_ray_placement_unless_another_is_named() -> None:
    from workbench.cli import _use_ray, build_parser

    try:
        args = build_parser().parse_args(["--ray", "auto", "run", "torch:smollm2", "hi"])
        _use_ray(args)
        assert args.placement == "ray" and ray_placement.default_address() == "auto"
        args = build_parser().parse_args(["run", "--placement", "process", "--ray", "ray://head:10001", "torch:smollm2"])
        _use_ray(args)
        assert args.placement == "process" and ray_placement.default_address() == "ray://head:10001"
        with pytest.raises(WorkbenchError, match=r"bad Ray address 'http://head'"):
            _use_ray(build_parser().parse_args(["--ray", "http://head", "runtimes"]))
    finally:
        ray_placement.set_default_address(None)


def test_runtimes_reports_ray_and_whether_a_cluster_answers(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from workbench.cli import main

    try:
        assert main(["--ray", "ray://127.0.0.1:9", "runtimes", "--json"]) == 0  # port 9: nothing listens
    finally:
        ray_placement.set_default_address(None)
    reports = {item["name"]: item for item in json.loads(capsys.readouterr().out)}
    assert reports["torch"]["ray"]["installed"] is True
    assert reports["torch"]["ray"]["cluster"].startswith("no cluster answers at ray://127.0.0.1:9")
    assert "ray" not in reports["ollama-rest"]


# ----- per-actor placement in specs ---------------------------------------------------------------------
def test_an_in_process_spec_names_its_own_placement_after_the_at() -> None:
    from workbench.errors import SpecError
    from workbench.runtimes.registry import using_placement

    with using_placement("process"):  # the command's placement; the spec's wins for its actor
        on_ray = create_actor("torch:smollm2@ray://head:10001")
        here = create_actor("torch:smollm2")
        local = create_actor("transformers:smollm2@ray:local")
    assert isinstance(on_ray, InProcessModelRuntimeActor) and isinstance(here, InProcessModelRuntimeActor)
    assert (on_ray.placement_name, on_ray.placement_options) == ("ray", {"address": "ray://head:10001"})
    assert on_ray.spec == "torch:smollm2@ray://head:10001"  # sessions and bench files keep it
    assert here.placement_name == "process"
    assert (local.placement_name, local.placement_options) == ("ray", {"address": "local"})  # type: ignore[attr-defined]
    with pytest.raises(SpecError, match=r"'@http://box:8080' must name a placement: process, ray, thread"):
        create_actor("torch:smollm2@http://box:8080")


def test_the_add_pane_picker_offers_ray_placed_models_when_ray_is_installed() -> None:
    from workbench.app.screens.actor_picker import suggestions
    from workbench.runtimes.base import Availability
    from workbench.runtimes.registry import RuntimeReport

    reports = [RuntimeReport("torch", "", "in-process", Availability(True)),
               RuntimeReport("ollama-rest", "", "rest", Availability(True))]
    offered, _ = suggestions(reports, ["smollm2"], ray=True)
    assert offered == ["torch:smollm2", "torch:smollm2@ray", "ollama-rest:MODEL"]
    assert suggestions(reports, ["smollm2"])[0] == ["torch:smollm2", "ollama-rest:MODEL"]


# ----- the app --------------------------------------------------------------------------------------
async def test_the_app_graphs_the_ray_actors_own_memory(placed: Placed, tmp_path: Path) -> None:
    actor = placed.actor
    last_mib, _ = await graphed_memory({actor.spec: actor}, tmp_path)
    assert len(last_mib) == 1, last_mib.keys()
    (graphed,) = last_mib.values()
    host_mib = psutil.Process(host_pid(actor)).memory_info().rss / 2**20
    assert abs(graphed - host_mib) < 0.2 * host_mib
    target = actor.memory_target()  # what the sampler read: the Ray actor's process, not the app's
    assert target is not None and target.pid == host_pid(actor) != os.getpid()


async def test_a_model_on_another_node_is_graphed_from_the_figures_it_sends(
    placed: Placed, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workbench.metrics.sampler import ResourceSampler

    placement = placed.actor.placement
    await placed.actor.chat(QUESTION, options=GREEDY | {"max_tokens": 4})  # figures came with the stream
    monkeypatch.setattr(ray_placement, "node_name", lambda: "some-other-machine")  # as if the app ran elsewhere
    sampler = ResourceSampler()
    sampler.watch("p1", placed.actor.memory_target)
    taken = sampler.sample_once()["p1"]  # no pid here to read: the host's own reading instead
    host_rss = psutil.Process(host_pid(placed.actor)).memory_info().rss
    assert abs(taken.rss_bytes - host_rss) < 0.2 * host_rss and taken.rss_bytes == placement.figures.rss_bytes  # type: ignore[union-attr]
    await wait_for(lambda: placement._refresh is not None and placement._refresh.done())  # type: ignore[union-attr]
    assert placement._refresh.exception() is None  # type: ignore[union-attr]  # idle: figures asked for again


# ----- the host's coalescing, in this process (plain Python: no Ray needed) -------------------------------
class PacedWorker(ModelWorker):
    """Tokens at a fixed pace with no model behind them: the one thing a real 135M model on this CPU
    cannot do is produce tokens faster than the coalescing window, which is what is tested here."""

    def load(self, progress) -> None:  # noqa: ANN001
        progress(1.0, "nothing to load")

    def unload(self) -> None:
        pass

    def stream(self, operation: str, request: dict, cancel: threading.Event) -> Iterator[Chunk]:  # type: ignore[override]
        count = int(self.spec.options["tokens"])
        for index in range(count):
            if cancel.is_set():
                break
            time.sleep(float(self.spec.options["pace_s"]))
            yield Chunk(text=f"t{index} ", tokens=1)
        yield Chunk(done=True, finish_reason="cancelled" if cancel.is_set() else "stop",
                    usage=Usage(input_tokens=1, output_tokens=count))


def paced_host(tokens: int, pace_s: float) -> ray_placement.RayWorkerHost:
    spec = WorkerSpec(factory=f"{__name__}:PacedWorker", model="paced", options={"tokens": tokens, "pace_s": pace_s})
    host = ray_placement.RayWorkerHost(spec.model_dump(mode="json"))
    assert [kind for kind, _ in host.load()] == ["progress", "ready"]
    return host


def test_the_host_sends_the_first_token_alone_then_batches_fast_tokens() -> None:
    host = paced_host(tokens=60, pace_s=0.002)  # 500 tokens/s: ~12 per 25 ms window
    started = time.monotonic()
    batches = list(host.stream("s1", "chat", {}, 25.0))
    windows = (time.monotonic() - started) / 0.025
    sizes = [sum(chunk.tokens or 0 for chunk in batch.chunks if not chunk.done) for batch in batches]
    assert sizes[0] == 1  # the first token goes out at once (TTFT)
    # At most one object per window (plus the first token and the end), however slow the machine is.
    assert sum(sizes) == 60 and len(batches) <= windows + 3 and len(batches) < 60
    text = "".join(chunk.text for batch in batches for chunk in batch.chunks)
    assert text == "".join(f"t{index} " for index in range(60))
    assert batches[-1].chunks[-1].done and batches[-1].figures is not None and batches[-1].figures.pid == os.getpid()


def test_slow_tokens_go_out_one_by_one() -> None:
    host = paced_host(tokens=5, pace_s=0.05)  # slower than the window: nothing waits for company
    batches = list(host.stream("s1", "chat", {}, 25.0))
    assert [sum(chunk.tokens or 0 for chunk in batch.chunks) for batch in batches[:5]] == [1, 1, 1, 1, 1]


def test_a_cancel_that_arrives_before_its_stream_still_stops_it() -> None:
    host = paced_host(tokens=1000, pace_s=0.001)
    host.cancel("s1")
    batches = list(host.stream("s1", "chat", {}, 25.0))
    final = batches[-1].chunks[-1]
    assert final.done and final.finish_reason == "cancelled"
    assert sum(chunk.tokens or 0 for batch in batches for chunk in batch.chunks if not chunk.done) == 0
