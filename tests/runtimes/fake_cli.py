"""A stand-in model program the CLI family tests run as a real subprocess (`python fake_cli.py MODE`).

Modes:
  stream N D   print N words without newlines, flushed one by one, D seconds apart
  gated PATH   print one word, wait until the file PATH exists, then print another
  echo         copy stdin to stdout, upper-cased
  fail         print a partial answer, a few lines on stderr, exit with status 3
  crash        print two words, then kill itself with SIGKILL
  hang         print its pid, then sleep (to be cancelled)
"""

from __future__ import annotations

import os
import signal
import sys
import time


def write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "stream":
        count, delay = int(argv[1]), float(argv[2])
        for index in range(count):
            write(("" if index == 0 else " ") + f"t{index}")
            time.sleep(delay)
        return 0
    if mode == "gated":
        write("first")
        while not os.path.exists(argv[1]):
            time.sleep(0.01)
        write(" second")
        return 0
    if mode == "echo":
        write(sys.stdin.read().upper())
        return 0
    if mode == "fail":
        write("partial")
        sys.stderr.write("loading model\nerror: model 'nope' not found, try pulling it first\n")
        return 3
    if mode == "crash":
        write("one two")
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "hang":
        write(f"pid={os.getpid()}")
        time.sleep(60)
        return 0
    sys.stderr.write(f"unknown mode {mode!r}\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
