"""One bounded reader of regular files (`workbench.files`) behind every file a person names: sessions,
prompt files (`workbench run`, `workbench bench`), images and `@FILE` attachments refuse the same
things, naming the file and the problem in their own error type."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workbench.app.widgets.prompt_box import attachment_text
from workbench.bench.prompts import load_prompts
from workbench.errors import InvalidImage, PromptFileError, SessionFileError
from workbench.files import NO_SUCH_FILE, FileRefused, read_bounded
from workbench.runtimes.base import read_image_file
from workbench.sessions.store import load_session


def test_read_bounded_refuses_what_is_not_a_bounded_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(FileRefused, match=r"not a regular file \(a FIFO\)"):  # refused, never blocks
        read_bounded(fifo, 10)
    with pytest.raises(FileRefused, match=r"not a regular file \(a device\)"):
        read_bounded(Path("/dev/zero"), 10)
    with pytest.raises(FileRefused, match=r"not a regular file \(a folder\)"):
        read_bounded(tmp_path, 10)
    with pytest.raises(FileRefused) as missing:
        read_bounded(tmp_path / "absent", 10)
    assert missing.value.problem == NO_SUCH_FILE
    big = tmp_path / "big"
    big.write_bytes(b"x" * 11)
    with pytest.raises(FileRefused, match="11 bytes, more than the 10 bytes allowed"):
        read_bounded(big, 10)
    link = tmp_path / "link"
    link.symlink_to(big)
    assert read_bounded(link, 11) == b"x" * 11  # a link to a regular file is fine


def test_every_reader_names_a_folder_as_a_folder_in_its_own_error(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(SessionFileError, match="a folder"):
        load_session(folder)
    with pytest.raises(PromptFileError, match="a folder"):
        load_prompts(str(folder))
    with pytest.raises(InvalidImage, match="a folder"):
        read_image_file(folder)
    with pytest.raises(ValueError, match=f"cannot attach {folder}: not a regular file \\(a folder\\)"):
        attachment_text(f"@{folder}")
    with pytest.raises(PromptFileError, match="no such prompt file"):
        load_prompts(str(tmp_path / "absent.jsonl"))
    with pytest.raises(FileNotFoundError, match="image file not found"):
        read_image_file(tmp_path / "absent.png")
    with pytest.raises(ValueError, match="to attach"):
        attachment_text(f"@{tmp_path / 'absent.txt'}")
