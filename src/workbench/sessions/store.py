"""Reading and writing session and benchmark files, crash-safely.

- A running session appends one JSON line per event to `<id>.journal.jsonl` (flushed per event,
  fsynced at most once a second and on close): a crash loses at most the line being written, and
  the journal loads up to its last complete line.
- A saved session or benchmark run is written atomically: a temporary file in the same folder,
  fsynced, then renamed over the target, so a reader sees the old file or the new one, never half.
- Loading validates everything and never executes anything; a bad file raises SessionFileError
  naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import IO, Any, BinaryIO, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from workbench import files
from workbench.errors import SessionFileError
from workbench.redact import redact
from workbench.sessions.schema import (
    BENCHMARK_FORMAT,
    BENCHMARK_VERSIONS,
    JOURNAL_FORMAT,
    SCHEMA_VERSION,
    SESSION_VERSIONS,
    SESSION_FORMAT,
    BenchmarkRun,
    ChatSession,
    PaneEvent,
    PaneRecord,
    PromptEvent,
    SessionEvent,
    SessionHeader,
    migrate_benchmark,
    migrate_session,
)

MAX_FILE_BYTES = 256 * 1024 * 1024
FSYNC_INTERVAL_S = 1.0
JOURNAL_SUFFIX = ".journal.jsonl"
M = TypeVar("M", bound=BaseModel)
_event_adapter: TypeAdapter[Any] = TypeAdapter(SessionEvent)


def default_sessions_dir() -> Path:
    """`$WORKBENCH_SESSIONS`, else `sessions/` in the current folder."""
    return Path(os.environ.get("WORKBENCH_SESSIONS", "sessions"))


def to_json_data(model: BaseModel) -> Any:
    """What gets written for a model: its JSON form with secrets redacted."""
    return redact(model.model_dump(mode="json"))


# ----- atomic writes -------------------------------------------------------------------------------------
def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temp_name, 0o666 & ~_umask())  # mkstemp makes 0600; a saved session is meant to be shared
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def save_model(model: BaseModel, path: Path) -> Path:
    atomic_write_text(Path(path), json.dumps(to_json_data(model), indent=1, ensure_ascii=False) + "\n")
    return Path(path)


def save_session(session: ChatSession, path: Path) -> Path:
    return save_model(session.model_copy(update={"format": SESSION_FORMAT}), path)


def save_benchmark(run: BenchmarkRun, path: Path) -> Path:
    return save_model(run, path)


def fallback_dir() -> Path:
    """Where a run goes when its folder cannot be written: `<system temp>/workbench-unsaved`."""
    return Path(tempfile.gettempdir()) / "workbench-unsaved"


@dataclass(frozen=True, slots=True)
class SaveOutcome:
    """Where a run was saved; `failed`/`problem` say where it could not be written first, and why."""

    path: Path
    failed: Path | None = None
    problem: str | None = None


def save_benchmark_or_fallback(run: BenchmarkRun, path: Path) -> SaveOutcome:
    """Save at `path`; when that cannot be written (a read-only or missing folder, a full disk), save
    in `fallback_dir()` instead, so a finished benchmark is never lost. Raises OSError naming both
    places when neither can be written."""
    path = Path(path)
    try:
        return SaveOutcome(save_benchmark(run, path))
    except OSError as error:
        problem = error.strerror or str(error)
    fallback = fallback_dir() / path.name
    try:
        return SaveOutcome(save_benchmark(run, fallback), path, problem)
    except OSError as error:
        raise OSError(f"could not write {path} ({problem}) nor {fallback} ({error.strerror or error})") from None


# ----- the journal ----------------------------------------------------------------------------------------
class SessionJournal:
    """Append-only journal of a running session."""

    def __init__(self, path: Path, header: SessionHeader) -> None:
        self.path = Path(path)
        self.header = header
        self.started = time.monotonic()
        self._last_sync = 0.0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stream: IO[str] | None = open(self.path, "x", encoding="utf-8")
        self._write(to_json_data(header.model_copy(update={"format": JOURNAL_FORMAT})), sync=True)

    @classmethod
    def create(cls, folder: Path, header: SessionHeader) -> SessionJournal:
        return cls(Path(folder) / f"{header.id}{JOURNAL_SUFFIX}", header)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def append(self, event: BaseModel) -> None:
        self._write(to_json_data(event))

    def add_pane(self, record: PaneRecord) -> None:
        from workbench.sessions.schema import PaneEvent

        self.append(PaneEvent(t=self.elapsed(), pane=record.id, record=record))

    def close(self) -> None:
        if self._stream is not None:
            self._sync()
            self._stream.close()
            self._stream = None

    @property
    def closed(self) -> bool:
        return self._stream is None

    def _write(self, data: Any, *, sync: bool = False) -> None:
        if self._stream is None:
            raise ValueError(f"journal {self.path} is closed")
        self._stream.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._stream.flush()
        if sync or time.monotonic() - self._last_sync >= FSYNC_INTERVAL_S:
            self._sync()

    def _sync(self) -> None:
        if self._stream is not None:
            os.fsync(self._stream.fileno())
            self._last_sync = time.monotonic()

    def __enter__(self) -> SessionJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----- loading --------------------------------------------------------------------------------------------
def open_regular_file(path: Path) -> BinaryIO:
    """`files.open_regular_file`, refusing with SessionFileError."""
    return files.open_regular_file(path, SessionFileError)


def read_bounded(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """`files.read_bounded`, refusing with SessionFileError."""
    return files.read_bounded(path, limit, SessionFileError)


def _read_text(path: Path) -> str:
    """The file's text: a regular file, within the size limit, in UTF-8."""
    try:
        return read_bounded(path).decode("utf-8")
    except UnicodeDecodeError as error:
        raise SessionFileError(path, f"not UTF-8 text (byte {error.start})") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(path: Path, text: str, where: str = "") -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise SessionFileError(path, f"JSON nested too deeply{where}") from None
    except ValueError as error:
        detail = f"line {error.lineno} column {error.colno}: {error.msg}" if isinstance(error, json.JSONDecodeError) else str(error)
        raise SessionFileError(path, f"not valid JSON{where} ({detail})") from None


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:3]:
        location = ".".join(str(part) for part in item["loc"]) or "top level"
        problems.append(f"{location}: {item['msg']}")
    more = f" (and {error.error_count() - 3} more)" if error.error_count() > 3 else ""
    return "; ".join(problems) + more


def _check_format(path: Path, data: Any, expected: tuple[str, ...],
                  versions: tuple[int, ...] = (SCHEMA_VERSION,)) -> None:
    if not isinstance(data, dict):
        raise SessionFileError(path, f"expected a JSON object, found {type(data).__name__}")
    found = data.get("format")
    if found not in expected:
        raise SessionFileError(path, f"not a workbench file of the expected kind (format {found!r}, expected {' or '.join(expected)})")
    version = data.get("version")
    if type(version) is not int or version not in versions:  # true and 1.0 equal 1, but are not versions
        readable = " or ".join(map(str, versions))
        raise SessionFileError(path, f"unsupported version {version!r}: this workbench reads version {readable}")


def _validate(path: Path, model: type[M], data: Any, where: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise SessionFileError(path, f"does not match the {model.__name__} schema{where}: {_describe(error)}") from None


def load_session(path: Path | str) -> ChatSession:
    """Load a saved session (`.json`) or a journal (`.journal.jsonl`, possibly cut short by a crash)."""
    path = Path(path)
    if path.name.endswith(".jsonl"):
        header, events = _journal_stream(path)
        return ChatSession(**header.model_dump(exclude={"format"}), format=SESSION_FORMAT, events=list(events))
    data = _parse_json(path, _read_text(path))
    _check_format(path, data, (SESSION_FORMAT,), SESSION_VERSIONS)
    return _validate(path, ChatSession, migrate_session(data))


# ----- streaming ------------------------------------------------------------------------------------------
SessionEvents = Iterator[SessionEvent]


def stream_session(path: Path | str) -> tuple[SessionHeader, SessionEvents]:
    """A session read as it is used: the header (checked) at once, then its events one at a time,
    each validated as it is read, so memory does not grow with the number of events. Problems found
    later raise SessionFileError from the iterator. Events come in file (recorded) order.

    A journal is read line by line. A saved `.json` is scanned incrementally (`_JSONScanner`) when,
    as workbench writes it, `format` and `id` come before `events`; a file ordered otherwise is
    loaded whole (still bounded by MAX_FILE_BYTES)."""
    path = Path(path)
    if path.name.endswith(".jsonl"):
        return _journal_stream(path)
    stream = open_regular_file(path)
    try:
        _check_size(path, stream)
        scanner = _JSONScanner(path, stream)
        header_data = scanner.header_before("events")
    except BaseException:
        stream.close()
        raise
    if header_data is None:  # not in workbench's order: read it whole
        stream.close()
        session = load_session(path)
        return SessionHeader(**session.model_dump(exclude={"events"})), iter(session.events)
    _check_format(path, header_data, (SESSION_FORMAT,), SESSION_VERSIONS)
    header = _validate(path, SessionHeader, migrate_session(header_data))
    return header, _closing(stream, scanner.array_items(_validate_event))


def _check_size(path: Path, stream: BinaryIO) -> None:
    size = os.fstat(stream.fileno()).st_size
    if size > MAX_FILE_BYTES:
        raise SessionFileError(path, f"file is {size} bytes, more than the {MAX_FILE_BYTES} bytes allowed")


def _closing(stream: BinaryIO, items: SessionEvents) -> SessionEvents:
    with stream:
        yield from items


def _validate_event(path: Path, data: Any, where: str) -> SessionEvent:
    try:
        return _event_adapter.validate_python(data)
    except ValidationError as error:
        raise SessionFileError(path, f"{where} is not a valid session event: {_describe(error)}") from None


def _journal_stream(path: Path) -> tuple[SessionHeader, SessionEvents]:
    """A journal's header, then its events line by line. Bytes after the last newline are a line cut
    off by a crash (maybe mid-character) and are ignored; blank lines are skipped."""
    stream = open_regular_file(path)
    try:
        _check_size(path, stream)
        first = stream.readline()
        if not first.endswith(b"\n"):
            raise SessionFileError(path, "empty journal (no complete header line)")
        header_data = _parse_json(path, _decode_line(path, first, 0), " on line 1")
        _check_format(path, header_data, (JOURNAL_FORMAT,), SESSION_VERSIONS)
        header = _validate(path, SessionHeader, migrate_session(header_data), " on line 1")
    except BaseException:
        stream.close()
        raise
    return header, _journal_events(path, stream, len(first))


def _journal_events(path: Path, stream: BinaryIO, offset: int) -> SessionEvents:
    with stream:
        for number, raw in enumerate(stream, start=2):
            if not raw.endswith(b"\n"):
                return  # cut off mid-write
            line = _decode_line(path, raw, offset)
            offset += len(raw)
            if line.strip():
                yield _validate_event(path, _parse_json(path, line, f" on line {number}"), f"line {number}")


def _decode_line(path: Path, raw: bytes, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SessionFileError(path, f"not UTF-8 text (byte {offset + error.start})") from None


_WHITESPACE = re.compile(r"[ \t\n\r]*")


class _JSONScanner:
    """Reads one JSON object incrementally: the members before a given key, then that key's array
    one item at a time. Hand-written because the standard library has no incremental parser and
    the one library that has (ijson) would be a new dependency for this single use; each value is
    still decoded by `json` (`raw_decode`), so what is accepted is what `json.loads` accepts (NaN
    refused, nesting bounded). A value is taken only once something follows it in the buffer (or
    the file has ended), so a number cut at the buffer's edge is never misread."""

    CHUNK = 1 << 20

    def __init__(self, path: Path, stream: BinaryIO) -> None:
        self.path = path
        self.reader = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")
        self.buffer = ""
        self.position = 0
        self.ended = False
        self.in_array = False
        self.decoder = json.JSONDecoder(parse_constant=_reject_constant)

    def _fill(self) -> bool:
        try:
            data = self.reader.read(self.CHUNK)
        except UnicodeDecodeError as error:
            raise SessionFileError(self.path, f"not UTF-8 text ({error.reason})") from None
        if not data:
            self.ended = True
            return False
        self.buffer = self.buffer[self.position:] + data
        self.position = 0
        return True

    def peek(self) -> str | None:
        """The next character that is not whitespace (not consumed); None at the end of the file."""
        while True:
            self.position = _WHITESPACE.match(self.buffer, self.position).end()  # type: ignore[union-attr]
            if self.position < len(self.buffer):
                return self.buffer[self.position]
            if not self._fill():
                return None

    def expect(self, characters: str) -> str:
        found = self.peek()
        if found is None or found not in characters:
            shown = "the end of the file" if found is None else repr(found)
            wanted = " or ".join(map(repr, characters))
            raise SessionFileError(self.path, f"not valid JSON (expected {wanted}, found {shown})")
        self.position += 1
        return found

    def value(self) -> Any:
        if self.peek() is None:
            raise SessionFileError(self.path, "not valid JSON (the file ends where a value should be)")
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buffer, self.position)
                if end < len(self.buffer) or self.ended:
                    self.position = end
                    return value
            except RecursionError:
                raise SessionFileError(self.path, "JSON nested too deeply") from None
            except json.JSONDecodeError as error:
                if self.ended:
                    raise SessionFileError(self.path, f"not valid JSON ({error.msg})") from None
            except ValueError as error:  # NaN / Infinity
                raise SessionFileError(self.path, f"not valid JSON ({error})") from None
            self._fill()

    def header_before(self, key: str) -> dict[str, Any] | None:
        """The object's members up to `key` (consumed, with its `[`), or the whole object when it has
        no such key; None when `format` or `id` would come after it."""
        self.expect("{")
        members: dict[str, Any] = {}
        if self.peek() == "}":
            self.position += 1
            self._expect_end()
            return members
        while True:
            name = self.value()
            if not isinstance(name, str):
                raise SessionFileError(self.path, "not valid JSON (an object key is not a string)")
            self.expect(":")
            if name == key:
                if "format" not in members or "id" not in members:
                    return None
                self.expect("[")
                self.in_array = True
                return members
            members[name] = self.value()
            if self.expect(",}") == "}":
                self._expect_end()
                return members

    def array_items(self, validate: Callable[[Path, Any, str], Any]) -> Iterator[Any]:
        """The items of the array `header_before` stopped in, each passed through `validate`, then
        the rest of the object (which must hold nothing more)."""
        if not self.in_array:
            return
        index = 0
        if self.peek() == "]":
            self.position += 1
        else:
            while True:
                yield validate(self.path, self.value(), f"event {index}")
                index += 1
                if self.expect(",]") == "]":
                    break
        if self.expect(",}") == ",":
            name = self.value()
            raise SessionFileError(self.path, f"{name!r} after the events is not a session field")
        self._expect_end()

    def _expect_end(self) -> None:
        if self.peek() is not None:
            raise SessionFileError(self.path, "not valid JSON (extra data after the object)")


def load_benchmark(path: Path | str) -> BenchmarkRun:
    path = Path(path)
    data = _parse_json(path, _read_text(path))
    _check_format(path, data, (BENCHMARK_FORMAT,), BENCHMARK_VERSIONS)
    return _validate(path, BenchmarkRun, migrate_benchmark(data))


# ----- listing --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionSummary:
    path: Path
    name: str
    created_at: datetime
    panes: list[str]
    turns: int
    journal: bool


def list_sessions(folder: Path | None = None) -> tuple[list[SessionSummary], list[SessionFileError]]:
    """Sessions in `folder`, newest first, and the files that could not be read (shown, not hidden)."""
    folder = Path(folder or default_sessions_dir())
    found: list[SessionSummary] = []
    problems: list[SessionFileError] = []
    if not folder.is_dir():
        return found, problems
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        is_journal = path.name.endswith(JOURNAL_SUFFIX)
        if not (is_journal or path.suffix == ".json"):
            continue
        try:
            if not is_journal and peek_format(path) == BENCHMARK_FORMAT:
                continue  # benchmark runs live here too; anything else unreadable is reported
            found.append(_summarize(path, is_journal))
        except SessionFileError as error:
            problems.append(error)
    found.sort(key=lambda summary: summary.created_at, reverse=True)
    return found, problems


def _summarize(path: Path, journal: bool) -> SessionSummary:
    """A session's summary from one streamed pass: memory does not grow with its events."""
    header, events = stream_session(path)
    panes = {pane.id: pane for pane in header.panes}
    turns = 0
    for event in events:
        if isinstance(event, PromptEvent):
            turns += 1
        elif isinstance(event, PaneEvent):
            panes[event.record.id] = event.record
    return SessionSummary(path, header.name or header.id, header.created_at,
                          [pane.spec for pane in panes.values()], turns, journal)


def peek_format(path: Path) -> str | None:
    """The `format` named in the file's first 4 KB, if any (raises SessionFileError for a file that
    is not a regular file or cannot be read)."""
    try:
        with open_regular_file(path) as stream:
            head = stream.read(4096).decode("utf-8", errors="replace")
    except OSError as error:
        raise SessionFileError(path, f"cannot read it ({error.strerror})") from None
    marker = head.find('"format"')
    if marker < 0:
        return None
    rest = head[marker + len('"format"'):].lstrip(" \n:")
    return rest[1:].split('"', 1)[0] if rest.startswith('"') else None


def _fsync_dir(folder: Path) -> None:
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
