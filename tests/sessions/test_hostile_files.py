"""Hostile files in the sessions folder (issue 11): FIFOs and links to devices are refused without
blocking or reading forever, and strings from files are plain text in every widget."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.test_sessions import make_session
from workbench.errors import SessionFileError
from workbench.sessions import list_sessions, load_session, save_session
from workbench.sessions.store import peek_format

def hostile_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo.json")
    os.mkfifo(folder / "fifo.journal.jsonl")
    (folder / "zero.json").symlink_to("/dev/zero")
    (folder / "dir.json").mkdir()


def run_bounded(function, *args):  # noqa: ANN001, ANN201 - test helper
    """Run in a thread and fail (rather than hang the test run) if it does not return in 10 s."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(function(*args))
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            outcome.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), f"{function.__name__} hung"
    return outcome[0]


@pytest.mark.parametrize("name", ["fifo.json", "fifo.journal.jsonl", "zero.json", "dir.json"])
def test_a_fifo_a_device_link_or_a_folder_is_refused_at_once(tmp_path: Path, name: str) -> None:
    hostile_folder(tmp_path)
    error = run_bounded(load_session, tmp_path / name)
    assert isinstance(error, SessionFileError) and "not a regular file" in str(error) and name in str(error)
    if name.endswith(".json"):
        assert isinstance(run_bounded(peek_format, tmp_path / name), SessionFileError)


def test_list_sessions_reports_hostile_files_and_lists_the_good_one(tmp_path: Path) -> None:
    hostile_folder(tmp_path)
    save_session(make_session(), tmp_path / "good.json")
    (tmp_path / "link.json").symlink_to(tmp_path / "good.json")  # a link to a regular file is fine
    found, problems = run_bounded(list_sessions, tmp_path)
    assert sorted(summary.path.name for summary in found) == ["good.json", "link.json"]
    assert sorted(Path(problem.path).name for problem in problems) == [
        "dir.json", "fifo.journal.jsonl", "fifo.json", "zero.json"]
