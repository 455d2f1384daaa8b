"""Reading a file a person names (a session, a prompt file, an image, an attachment): one routine, so
every reader refuses the same things the same way — a missing file, a FIFO that would block forever,
a device such as `/dev/zero` that never ends, a folder, a file over the reader's size limit — with a
message naming the file and the problem, in the error type its caller speaks.

Hand-written over `os`: the check is made on the opened descriptor (`fstat`), so nothing can swap the
file between the check and the read, which `Path.is_file()` followed by `open()` cannot promise.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from workbench.errors import WorkbenchError

NO_SUCH_FILE = "no such file"


class FileRefused(WorkbenchError):
    """A file that cannot be read as asked; `problem` says why (`NO_SUCH_FILE` when it is absent)."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


ErrorFor = Callable[[Path, str], Exception]  # (path, problem) → the caller's own error


def open_regular_file(path: Path, error: ErrorFor = FileRefused) -> BinaryIO:
    """Open `path` for reading only if it is a regular file (a symlink to one is fine). The open never
    blocks (O_NONBLOCK: a FIFO would wait for a writer forever), and a FIFO, device, socket or folder
    is refused by what the opened descriptor is."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(path, NO_SUCH_FILE) from None
    except OSError as problem:
        raise error(path, f"cannot read it ({problem.strerror})") from None
    mode = os.fstat(handle).st_mode
    if not stat.S_ISREG(mode):
        os.close(handle)
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a folder" if stat.S_ISDIR(mode) else "a socket" if stat.S_ISSOCK(mode) else "special")
        raise error(path, f"not a regular file ({kind}); only regular files are read")
    return os.fdopen(handle, "rb")


def read_bounded(path: Path, limit: int, error: ErrorFor = FileRefused) -> bytes:
    """A regular file's bytes, refusing it when it holds more than `limit` (at most limit+1 are read,
    so a file that grows while it is read is refused too)."""
    with open_regular_file(path, error) as stream:
        size = os.fstat(stream.fileno()).st_size
        if size > limit:
            raise error(path, f"file is {size} bytes, more than the {limit} bytes allowed")
        try:
            data = stream.read(limit + 1)
        except OSError as problem:  # EISDIR cannot happen here; EIO and the like can
            raise error(path, f"cannot read it ({problem.strerror})") from None
    if len(data) > limit:
        raise error(path, f"file is more than the {limit} bytes allowed")
    return data
