"""`workbench run` inputs (issue 11): prompts too long for a command line come from stdin or a file;
an `--image` that is not an image is refused before any model loads; a prompt longer than the
model's context is a one-line error with exit status 2."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from tests.test_run_command import ROOT
from workbench.cli import main
from workbench.errors import PromptTooLong
from workbench.runtimes.base import ModelRuntimeActor

LONG = " ".join(f"w{number}" for number in range(30_000))  # ~200 KB: over the kernel's 128 KB per argument


def scripted_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.bench.scripted_cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def png_bytes() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")


def test_a_command_line_cannot_carry_the_long_prompt() -> None:
    """Why stdin and files are needed at all: the kernel refuses one argument this long."""
    with pytest.raises(OSError):
        subprocess.run([sys.executable, "-c", "pass", LONG * 2], timeout=30)


@pytest.mark.parametrize("how", ["dash", "pipe"])
def test_the_prompt_comes_from_stdin(how: str) -> None:
    args = ["run", "scripted:echo", "--json"] + (["-"] if how == "dash" else [])
    done = scripted_cli(*args, stdin=LONG + "\n")
    assert done.returncode == 0, done.stderr
    assert f'"answer": "{LONG}"' in done.stdout


def test_the_prompt_comes_from_a_file_and_embed_reads_one_text_per_line(tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(LONG, encoding="utf-8")
    done = scripted_cli("run", "scripted:echo", "--json", "--prompt-file", str(prompt))
    assert done.returncode == 0, done.stderr
    assert f'"answer": "{LONG}"' in done.stdout
    texts = tmp_path / "texts.txt"
    texts.write_text("first text\n\nsecond text\n", encoding="utf-8")
    done = scripted_cli("run", "scripted:echo", "--op", "embed", "--prompt-file", str(texts))
    assert done.returncode == 0, done.stderr
    assert "'first text'" in done.stdout and "'second text'" in done.stdout


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--prompt-file", "/no/such/prompt.txt"], "prompt file /no/such/prompt.txt not found"),
        (["--prompt-file", "/dev/null", "also words"], "not both"),
        (["--prompt-file", "BINARY"], "is not UTF-8 text"),
        (["--prompt-file", "EMPTY"], "is empty"),
    ],
)
def test_bad_prompt_sources_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], problem: str
) -> None:
    (tmp_path / "BINARY").write_bytes(b"\xff\xfe not text")
    (tmp_path / "EMPTY").write_text("\n")
    argv = [str(tmp_path / arg) if arg in ("BINARY", "EMPTY") else arg for arg in argv]
    assert main(["run", "smollm2", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert problem in err and "\n" not in err


@pytest.mark.parametrize("content", [b"just some text, not a picture", b"\x89PNG\r\n\x1a\n truncated"])
@pytest.mark.parametrize("op", ["summarize_image", "generate"])
def test_an_image_that_is_not_one_is_refused_before_any_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, content: bytes, op: str
) -> None:
    created: list[str] = []
    monkeypatch.setattr("workbench.commands.run._create", lambda args: created.append(args.spec))
    image = tmp_path / "photo.png"
    image.write_bytes(content)
    assert main(["run", "ollama:llava", "--op", op, "--image", str(image), "describe"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(image) in err and ("not an image" in err or "damaged PNG" in err) and "\n" not in err
    assert created == []  # refused where it entered: no actor was made, no model loaded


def test_a_real_image_passes_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[str] = []

    def create(args: object) -> None:
        created.append(getattr(args, "image"))
        raise SystemExit(0)  # stop here: the check passed

    monkeypatch.setattr("workbench.commands.run._create", create)
    image = tmp_path / "dot.png"
    image.write_bytes(png_bytes())
    with pytest.raises(SystemExit):
        main(["run", "ollama:llava", "--op", "summarize_image", "--image", str(image)])
    assert created and created[0].startswith("data:image/png;base64,")


async def test_a_prompt_over_the_context_is_prompt_too_long(smollm2_transformers: ModelRuntimeActor) -> None:
    with pytest.raises(PromptTooLong, match=r"the prompt is \d+ tokens; the model's context is 8192"):
        await smollm2_transformers.generate("word " * 9000)
    assert (await smollm2_transformers.generate("Hi", options={"max_tokens": 2})).text is not None  # serves on


def test_a_prompt_over_the_context_is_one_line_and_exit_2_from_the_command_line(tmp_path: Path) -> None:
    prompt = tmp_path / "long.txt"
    prompt.write_text("word " * 9000, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "run", "torch:smollm2", "--prompt-file", str(prompt),
                           "--threads", "1", "--max-tokens", "4"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()
    assert err[-1].startswith("workbench: the prompt is ") and "the model's context is 8192" in err[-1]
    assert "Traceback" not in done.stderr
