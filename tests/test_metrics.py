"""Request metrics on controlled timestamps, percentiles against numpy, and the resource sampler on
this process and on a real child process tree."""

from __future__ import annotations

import asyncio
import mmap
import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import psutil
import pytest

from workbench.metrics import MetricsRecorder, ProcessTarget, ResourceSample, ResourceSampler, TimeSeries, percentile

MB = 1024 * 1024


def test_ttft_itl_tpot_e2e_and_throughput_follow_their_definitions() -> None:
    recorder = MetricsRecorder("c1", "chat", sent_at=10.0)
    recorder.started(10.5)  # half a second in the mailbox / waiting for a slot
    for at in (11.0, 11.25, 11.5, 12.0):  # four chunks of one token each
        recorder.token(1, at=at)
    metrics = recorder.finish(input_tokens=7, at=12.5)
    assert metrics.correlation_id == "c1" and metrics.operation == "chat"
    assert metrics.queued_s == pytest.approx(0.5)
    assert metrics.ttft_s == pytest.approx(1.0)  # send -> first token, queueing included
    assert metrics.itl_s == pytest.approx([0.25, 0.25, 0.5])  # one gap per later chunk
    assert metrics.mean_itl_s == pytest.approx(1.0 / 3)
    assert metrics.e2e_s == pytest.approx(2.5)  # send -> end
    assert metrics.output_tokens == 4 and metrics.input_tokens == 7
    assert metrics.tpot_s == pytest.approx((2.5 - 1.0) / 3)  # (E2E - TTFT) / (tokens - 1)
    assert metrics.decode_tokens_per_s == pytest.approx(3 / 1.5)
    assert metrics.output_tokens_per_s == pytest.approx(4 / 2.5)  # tokens / E2E


def test_multi_token_chunks_and_runtime_counts() -> None:
    recorder = MetricsRecorder(sent_at=0.0)
    recorder.token(3, at=1.0)
    recorder.token(2, at=2.0)
    assert recorder.finish(at=2.0).output_tokens == 5
    # The runtime's own count wins over our chunk count; its timings stay apart, labelled.
    recorder = MetricsRecorder(sent_at=0.0)
    recorder.token(1, at=1.0)
    metrics = recorder.finish(output_tokens=9, server={"eval_s": 0.4}, at=3.0)
    assert metrics.output_tokens == 9 and metrics.server == {"eval_s": 0.4}
    assert metrics.tpot_s == pytest.approx(2.0 / 8)


def test_unknown_token_counts_and_empty_answers() -> None:
    recorder = MetricsRecorder(sent_at=0.0)
    recorder.token(None, at=1.0)
    recorder.token(1, at=1.5)
    metrics = recorder.finish(at=2.0)
    assert metrics.output_tokens is None  # a chunk of unknown size: we do not guess
    assert metrics.ttft_s == 1.0 and metrics.itl_s == [0.5]
    assert metrics.output_tokens_per_s is None and metrics.tpot_s is None
    empty = MetricsRecorder(sent_at=0.0).finish(at=1.0)
    assert empty.ttft_s is None and empty.output_tokens == 0 and empty.itl_s == []
    assert empty.output_tokens_per_s is None and empty.mean_itl_s is None
    single = MetricsRecorder(sent_at=0.0)
    single.token(1, at=0.5)
    assert single.finish(at=0.5).tpot_s is None  # TPOT needs at least two tokens


@pytest.mark.parametrize(
    "values",
    [[5.0], [1.0, 2.0], [3.0, 1.0, 2.0], [0.1, 0.9, 0.5, 0.7, 0.3, 10.0], list(np.random.default_rng(7).random(101))],
)
@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 99, 100])
def test_percentile_matches_numpy(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


def test_time_series_is_bounded() -> None:
    series = TimeSeries(capacity=3)
    for index in range(5):
        series.append(ResourceSample(t=float(index), rss_bytes=index * 10, cpu_percent=0.0))
    assert len(series) == 3 and series.capacity == 3
    assert [sample.t for sample in series] == [2.0, 3.0, 4.0]
    assert series.latest is not None and series.latest.rss_bytes == 40
    assert series.peak_rss() == 40 and series.mean_rss() == 30
    assert [sample.t for sample in series.since(3.0)] == [3.0, 4.0]
    assert TimeSeries().peak_rss() is None


def test_sampler_sees_this_process_grow() -> None:
    sampler = ResourceSampler(interval_s=0.5)
    series = sampler.watch("me", ProcessTarget.this_process())
    before = sampler.sample_once()["me"]
    assert before.rss_bytes == pytest.approx(psutil.Process().memory_info().rss, rel=0.2)
    # Fresh anonymous pages, every one written: resident whatever the allocator kept from earlier tests.
    block = mmap.mmap(-1, 96 * MB)
    for offset in range(0, 96 * MB, mmap.PAGESIZE):
        block[offset] = 1
    after = sampler.sample_once()["me"]
    assert after.rss_bytes - before.rss_bytes > 64 * MB
    assert len(series) == 2 and block[-mmap.PAGESIZE] == 1
    block.close()


ALLOCATE = "import sys, time; block = b'x' * ({mb} * 1024 * 1024); print('ready', flush=True); time.sleep(60)"
PARENT = (
    "import subprocess, sys, time; "
    "child = subprocess.Popen([sys.executable, '-c', {child!r}]); "
    "print(child.pid, flush=True); time.sleep(60)"
)


@pytest.fixture
def process_tree() -> Iterator[tuple[int, int]]:
    """A parent (small) with one child holding ~80 MB; yields (parent pid, child pid)."""
    code = PARENT.format(child=ALLOCATE.format(mb=80))
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        child = psutil.Process(child_pid)
        while child.memory_info().rss < 80 * MB:  # wait for the allocation (bounded by the test timeout)
            psutil.wait_procs([], timeout=0.02)
        yield parent.pid, child_pid
    finally:
        for process in psutil.Process(parent.pid).children(recursive=True):
            process.kill()
        parent.kill()
        parent.wait()


def test_sampler_reads_a_child_process_tree(process_tree: tuple[int, int]) -> None:
    parent_pid, child_pid = process_tree
    sampler = ResourceSampler()
    sampler.watch("tree", ProcessTarget(parent_pid, include_children=True))
    sampler.watch("parent", ProcessTarget(parent_pid))
    sampler.watch("same tree again", lambda: ProcessTarget(parent_pid, include_children=True))
    sampler.watch("nothing yet", lambda: None)
    taken = sampler.sample_once()
    assert taken["tree"].processes == 2 and taken["parent"].processes == 1
    assert taken["tree"].rss_bytes - taken["parent"].rss_bytes > 70 * MB  # the child's memory counts
    assert taken["same tree again"] is taken["tree"]  # one reading per process per tick
    assert "nothing yet" not in taken and len(sampler.series["nothing yet"]) == 0
    child = psutil.Process(child_pid)
    child.kill()
    while child.is_running() and child.status() != psutil.STATUS_ZOMBIE:  # its parent never reaps it
        psutil.wait_procs([], timeout=0.02)
    later = sampler.sample_once()
    assert later["tree"].processes == 1
    assert later["tree"].rss_bytes < taken["tree"].rss_bytes - 70 * MB


SPAWN_ON_REQUEST = (
    "import subprocess, sys, time; sys.stdin.readline(); "
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print(child.pid, flush=True); time.sleep(60)"
)


def test_a_new_member_of_a_tree_is_seen_once_membership_is_refreshed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", SPAWN_ON_REQUEST], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        sampler = ResourceSampler(tree_refresh_s=3600)
        sampler.watch("tree", ProcessTarget(parent.pid, include_children=True))
        assert sampler.sample_once()["tree"].processes == 1
        assert parent.stdin is not None and parent.stdout is not None
        parent.stdin.write("go\n")
        parent.stdin.flush()
        child_pid = int(parent.stdout.readline())
        assert sampler.sample_once()["tree"].processes == 1  # membership is cached between refreshes
        sampler.tree_refresh_s = 0.0
        assert sampler.sample_once()["tree"].processes == 2
        psutil.Process(child_pid).kill()
    finally:
        parent.kill()
        parent.wait()


def test_sampler_skips_a_process_that_is_gone() -> None:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    sampler = ResourceSampler()
    sampler.watch("gone", ProcessTarget(finished.pid))
    assert sampler.sample_once() == {}
    with pytest.raises(ValueError, match="positive"):
        ResourceSampler(interval_s=0)


async def test_sampler_runs_in_the_background_into_bounded_series() -> None:
    sampler = ResourceSampler(interval_s=0.01, capacity=5)
    series = sampler.watch("me", ProcessTarget.this_process())
    sampler.start()
    assert sampler.running
    while len(series) < 5:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    await sampler.stop()
    assert not sampler.running
    assert len(series) == 5  # bounded: older samples fell off
    times = [sample.t for sample in series]
    assert times == sorted(times) and all(sample.rss_bytes > 0 for sample in series)
    count = len(series)
    latest = series.latest
    await asyncio.sleep(0.05)
    assert len(series) == count and series.latest is latest  # stopped means stopped
    assert os.getpid() == ProcessTarget.this_process().pid
