"""Every error workbench raises on purpose, so callers can catch one family and show a plain message."""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class: the message is written for the user, complete and without a traceback."""


class ActorStopped(WorkbenchError):
    """The actor was stopped; it takes no new messages until restarted."""


class ActorFailed(WorkbenchError):
    """The actor could not start (for example its model failed to load); a supervisor may restart it."""


class MessageCancelled(WorkbenchError):
    """The caller (or a stop without draining) cancelled this message."""


class NotSupported(WorkbenchError):
    """The runtime cannot do this operation; its capabilities say so too."""

    def __init__(self, runtime: str, operation: str, reason: str = "") -> None:
        self.runtime = runtime
        self.operation = operation
        detail = f": {reason}" if reason else ""
        super().__init__(f"{runtime} does not support {operation}{detail}")


class SpecError(WorkbenchError):
    """An actor spec string (runtime:model[@host]) is malformed or names an unknown runtime."""


class ModelNotFound(WorkbenchError):
    """The model does not exist where the runtime looked for it."""


class RuntimeUnavailable(WorkbenchError):
    """The runtime cannot run on this machine (binary missing, package missing, server down)."""


class RuntimeUnreachable(RuntimeUnavailable):
    """A server did not answer at its URL."""

    def __init__(self, name: str, url: str, reason: str = "") -> None:
        self.url = url
        detail = f" ({reason})" if reason else ""
        super().__init__(f"{name} not reachable at {url}{detail}")


class RuntimeTimeout(WorkbenchError):
    """A runtime took longer than its timeout to answer."""


class RuntimeHTTPError(WorkbenchError):
    """A server answered with an error status."""

    def __init__(self, status_code: int, message: str, url: str = "") -> None:
        self.status_code = status_code
        self.url = url
        where = f" from {url}" if url else ""
        super().__init__(f"HTTP {status_code}{where}: {message}")


class RuntimeProtocolError(WorkbenchError):
    """A runtime sent something we cannot parse (a malformed stream line, say)."""


class RuntimeProcessError(WorkbenchError):
    """A runtime subprocess exited with an error, crashed, or could not be started."""

    def __init__(self, message: str, *, returncode: int | None = None, stderr: str = "") -> None:
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(message)


class InsufficientMemory(WorkbenchError):
    """Loading a model would not fit in the memory available."""


class SessionFileError(WorkbenchError):
    """A session or benchmark file cannot be read: the message names the file and the problem."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class PromptFileError(WorkbenchError):
    """A benchmark prompt file (JSONL) cannot be used: the message names the file, the line and the problem."""

    def __init__(self, path: object, problem: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f" line {line}" if line is not None else ""
        super().__init__(f"{path}{where}: {problem}")


class PromptTooLong(WorkbenchError, ValueError):
    """The prompt does not fit the model's context. Also a ValueError: it is bad input, and callers
    that caught ValueError before keep working."""


class InvalidImage(WorkbenchError, ValueError):
    """An image file that is not an image workbench can send (PNG, JPEG, GIF or WebP), or is damaged."""


class BenchmarkError(WorkbenchError):
    """A benchmark cannot run as configured (no actors, a concurrency level out of range...)."""
