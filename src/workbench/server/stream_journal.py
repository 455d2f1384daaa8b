"""The kept streams of `workbench serve`, written down: an append-only journal, so `workbench logs`
still shows what the actors answered after the server restarts.

Format `workbench.stream-journal`, version 1, JSON lines: a header line (`format`, `version`), then
one `MessageRecord` per ended message (its input, the streamed text as kept by the `StreamLog`, how
it ended, its metrics), redacted like every file workbench writes, flushed as it is written. Bounded:
past `rotate_bytes` the file moves to `<name>.1` (replacing the one before) and a new one starts.
Loading reads both, never more than the bound, and skips lines it cannot read (a crash may cut the
last one) rather than losing the rest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from workbench.errors import SessionFileError
from workbench.metrics.streamlog import MessageRecord
from workbench.redact import redact
from workbench.sessions.store import read_bounded

FORMAT = "workbench.stream-journal"
VERSION = 1
ROTATE_BYTES = 16 * 1024 * 1024
_SLACK_BYTES = 4 * 1024 * 1024  # one last record may cross the bound (64 KiB text + thinking + input)


def rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


class StreamJournal:
    def __init__(self, path: Path | str, rotate_bytes: int = ROTATE_BYTES) -> None:
        self.path = Path(path)
        self.rotate_bytes = rotate_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stream: IO[str] | None = None
        self._open()

    def _open(self) -> None:
        self._stream = open(self.path, "a", encoding="utf-8")
        if self._stream.tell() == 0:
            self._write({"format": FORMAT, "version": VERSION})

    def append(self, record: MessageRecord) -> None:
        if self._stream is None:
            return
        if self._stream.tell() >= self.rotate_bytes:
            self._stream.close()
            os.replace(self.path, rotated(self.path))
            self._open()
        self._write(redact(record.model_dump(mode="json")))

    def _write(self, data: object) -> None:
        assert self._stream is not None
        self._stream.write(json.dumps(data, ensure_ascii=False, allow_nan=False) + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def load_stream_journal(path: Path | str, rotate_bytes: int = ROTATE_BYTES) -> tuple[list[MessageRecord], int]:
    """The records of the rotated file and the current one, oldest first, and how many lines were
    skipped as unreadable. A missing journal is empty; a file that is not a stream journal (or of a
    newer version) is a SessionFileError naming it."""
    path = Path(path)
    records: list[MessageRecord] = []
    skipped = 0
    for part in (rotated(path), path):
        if not part.exists():
            continue
        text = read_bounded(part, rotate_bytes + _SLACK_BYTES).decode("utf-8", errors="replace")
        lines = text.split("\n")
        try:
            header = json.loads(lines[0])
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise SessionFileError(part, f"not a workbench stream journal (expected format {FORMAT})")
        if header.get("version") != VERSION:
            raise SessionFileError(part, f"unsupported version {header.get('version')!r}: this workbench reads "
                                         f"version {VERSION}")
        for line in lines[1:]:
            if not line.strip():
                continue
            try:
                records.append(MessageRecord.model_validate_json(line))
            except (ValidationError, ValueError):
                skipped += 1
    return records, skipped
