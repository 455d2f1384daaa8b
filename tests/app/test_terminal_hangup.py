"""The real app in a real pseudo-terminal: when the terminal goes away, it quits.

Under `make run` in tmux, killing tmux left make (the terminal's session leader) waiting for its
child and the app without a terminal and without a SIGHUP; Textual's input thread then spun a core
at 100% until someone found it. Here a stand-in for make (leads the session, shrugs off SIGHUP,
waits for its child) runs the app; the terminal is closed; the app must be gone within seconds.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

LEADER = (
    "import fcntl, signal, subprocess, sys, termios\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # this pty is our controlling terminal (we lead a new session)\n"
    "signal.signal(signal.SIGHUP, lambda *_: None)  # as make does: the hangup does not end us\n"
    "sys.exit(subprocess.call(sys.argv[1:]))\n"
)


def _read_until(master: int, needle: bytes, timeout_s: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout_s
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                seen += os.read(master, 65536)
            except OSError:
                break
    return seen


def test_the_app_quits_when_its_terminal_goes_away(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40",
           "OLLAMA_HOST": "http://127.0.0.1:9", "WORKBENCH_OPENAI_URLS": ""}
    app = [sys.executable, "-m", "workbench.cli", "--actor", "openai:m@http://127.0.0.1:9",
           "--sessions", str(tmp_path / "sessions")]
    leader = subprocess.Popen([sys.executable, "-c", LEADER, *app], stdin=slave, stdout=slave, stderr=slave,
                              start_new_session=True, env=env, cwd=tmp_path)
    os.close(slave)
    try:
        drawn = _read_until(master, b"Ask something", 90)
        assert b"Ask something" in drawn, drawn[-2000:]
        os.close(master)  # the terminal goes away
        master = -1
        leader.wait(timeout=20)  # the app quit, so its stand-in make returned
    finally:
        if master >= 0:
            os.close(master)
        if leader.poll() is None:
            os.killpg(leader.pid, signal.SIGKILL)
            leader.wait()
