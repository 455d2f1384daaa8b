"""A process-placed worker started from inside the app: Textual replaces `sys.stderr` with a capture
object whose `fileno()` is -1 and draws its screen on the terminal. Spawning must still work, and the
worker's output (Python warnings, native code writing to fd 2) must not reach the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workbench.runtimes.placement.base import ModelWorker
from workbench.runtimes.types import Chunk, Usage

ROOT = Path(__file__).resolve().parents[2]


class NoisyWorker(ModelWorker):
    """No model: it writes to stdout, to `sys.stderr` and straight to fd 2, then answers "ok"."""

    def load(self, progress: Any) -> None:
        print("noise on stdout", flush=True)
        print("noise on stderr", file=sys.stderr, flush=True)
        os.write(2, b"native noise on fd 2\n")
        progress(1.0, "loaded")

    def unload(self) -> None:
        pass

    def stream(self, operation: str, request: dict[str, Any], cancel: threading.Event) -> Iterator[Chunk]:  # type: ignore[override]
        yield Chunk(text="ok", tokens=1)
        yield Chunk(done=True, finish_reason="stop", usage=Usage(input_tokens=1, output_tokens=1))


SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, threading

    class Capture:  # what a running Textual app puts in sys.stderr
        def write(self, text): return len(text)
        def flush(self): pass
        def isatty(self): return True
        def fileno(self): return -1

    from workbench.runtimes.placement.base import WorkerSpec
    from workbench.runtimes.placement.process import ProcessPlacement

    async def main():
        sys.stderr = Capture()
        spec = WorkerSpec(factory="tests.runtimes.test_placement_output:NoisyWorker", model="noisy", label="noisy")
        placement = ProcessPlacement(spec)
        await placement.start(lambda fraction, what: None)
        try:
            chunks = [chunk async for chunk in placement.stream("chat", {}, threading.Event())]
        finally:
            await placement.stop()
        sys.stderr = sys.__stderr__
        print("ANSWER", "".join(chunk.text or "" for chunk in chunks))

    if __name__ == "__main__":
        asyncio.run(main())
    """
)


def test_a_worker_spawned_under_a_stderr_capture_starts_and_keeps_its_output_off_the_terminal(tmp_path: Path) -> None:
    script = tmp_path / "spawn_under_capture.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "WORKBENCH_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "ANSWER ok" in done.stdout
    assert "noise" not in done.stdout and "noise" not in done.stderr  # nothing on the terminal
    (log,) = (tmp_path / "cache" / "logs").glob("worker-*.log")
    written = log.read_text(encoding="utf-8")
    assert "noise on stdout" in written and "noise on stderr" in written and "native noise on fd 2" in written


def test_a_worker_log_past_its_bound_starts_over(tmp_path: Path) -> None:
    from workbench.runtimes.placement.process import WORKER_LOG_MAX_BYTES

    small, big = tmp_path / "small.log", tmp_path / "big.log"
    small.write_text("earlier worker\n")
    big.write_bytes(b"x" * (WORKER_LOG_MAX_BYTES + 1))
    script = (
        "import sys; from workbench.runtimes.placement.process import _redirect_output as r; "
        "r(sys.argv[1]); print('new worker', flush=True)"
    )
    for log in (small, big):
        done = subprocess.run([sys.executable, "-c", script, str(log)], capture_output=True, text=True,
                              timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        assert done.returncode == 0 and done.stdout == ""  # everything went to the log
    assert small.read_text() == "earlier worker\nnew worker\n"  # appended: the last words stay
    assert big.read_text() == "new worker\n"  # past the bound: started over
