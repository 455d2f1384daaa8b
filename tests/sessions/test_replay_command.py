"""`workbench replay`: playback in the terminal, --json, --rerun side by side, and bad files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.metrics.request import RequestMetrics
from workbench.runtimes.types import ChatMessage
from workbench.sessions.schema import (
    ChatSession,
    ChunkEvent,
    DoneEvent,
    ErrorEvent,
    PaneRecord,
    PromptEvent,
    SampleEvent,
)
from workbench.sessions.store import load_session, save_session

REPO = Path(__file__).resolve().parents[2]


def saved_session(folder: Path) -> Path:
    """Two panes streaming at the same time, one answer with figures, one error."""
    def chunk(t: float, pane: str, cid: str, text: str) -> ChunkEvent:
        return ChunkEvent(t=t, pane=pane, correlation_id=cid, text=text)

    session = ChatSession(id="abc123", name="capitals", panes=[
        PaneRecord(id="hf", spec="scripted:echo"), PaneRecord(id="pt", spec="scripted:other"),
    ], events=[
        PromptEvent(t=0.0, pane="hf", correlation_id="1", message=ChatMessage(role="user", content="Capital of France?")),
        PromptEvent(t=0.0, pane="pt", correlation_id="2", message=ChatMessage(role="user", content="Capital of Spain?")),
        chunk(0.2, "hf", "1", "Paris"),
        chunk(0.3, "pt", "2", "Madrid,"),
        SampleEvent(t=0.3, pane="hf", rss_bytes=500_000_000, cpu_percent=90.0),
        chunk(0.4, "hf", "1", " of course."),
        DoneEvent(t=0.5, pane="hf", correlation_id="1",
                  metrics=RequestMetrics(ttft_s=0.2, e2e_s=0.5, output_tokens=4)),
        ErrorEvent(t=0.6, pane="pt", correlation_id="2", error="out of memory", error_type="InsufficientMemory"),
    ])
    return save_session(session, folder / "capitals.json")


def workbench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd=REPO)


def test_replay_prints_each_panes_turns_with_figures(tmp_path: Path) -> None:
    done = workbench("replay", str(saved_session(tmp_path)), "--instant")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("session capitals · ")
    assert "  [hf] scripted:echo" in lines and "  [pt] scripted:other" in lines
    assert lines[-1] == "-- 2 turns · 0.6 s"  # totals at the end: the file is streamed, not read ahead
    body = lines[3:-1]
    assert body == [
        "[hf] > Capital of France?",
        "[pt] > Capital of Spain?",
        "[hf] Paris",
        "[pt] Madrid,",
        "[hf]  of course.",
        "[hf] -- TTFT 0.20 s · 8.0 tok/s · 4 tokens · E2E 0.50 s",
        "[pt] error (InsufficientMemory): out of memory",
    ]


def test_a_bad_file_exits_2_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"format": "workbench.session", "version": 1, "id": ', encoding="utf-8")
    done = workbench("replay", str(bad), "--instant")
    assert done.returncode == 2
    assert done.stdout == ""
    assert str(bad) in done.stderr and "not valid JSON" in done.stderr and "Traceback" not in done.stderr


def test_missing_file_and_bad_speed_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "nope.json")]) == 2
    assert f"{tmp_path / 'nope.json'}: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main(["replay", str(tmp_path / "x.json"), "--speed", "0"])
    assert refused.value.code == 2
    assert "speed must be more than 0" in capsys.readouterr().err


def test_json_gives_the_transcript(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = saved_session(tmp_path)
    assert main(["replay", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    hf, pt = data["panes"]
    assert (data["name"], hf["spec"]) == ("capitals", "scripted:echo")
    assert hf["turns"][0] | {"ttft_s": 0.2} == hf["turns"][0]
    assert (hf["turns"][0]["answer"], hf["turns"][0]["output_tokens_per_s"]) == ("Paris of course.", 8.0)
    assert (pt["turns"][0]["status"], pt["turns"][0]["error"]) == ("error", "out of memory")


def test_rerun_prints_recorded_and_new_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], test_runtimes: None
) -> None:
    path = saved_session(tmp_path)
    reruns = tmp_path / "reruns"
    code = main(["--sessions", str(reruns), "replay", str(path), "--rerun", "--actor", "context:B",
                 "--actor", "scripted:echo", "--max-tokens", "64"])
    assert code == 0
    out = capsys.readouterr()
    assert "[hf] turn 1/1: done" in out.err
    lines = out.out.splitlines()
    assert lines[0] == "== [hf] recorded: scripted:echo  |  re-run: context:B"
    assert lines[1] == "turn 1 > Capital of France?"
    assert lines[2].split() == ["recorded", "|", "new"]
    recorded, new = lines[3].split(" | ")
    assert (recorded.strip(), new) == ("Paris of course.", "B saw user=Capital of France?")
    assert lines[4].startswith("  TTFT 0.20 s · 8.0 tok/s · 4 tokens · E2E 0.50 s") and "| TTFT " in lines[4]
    pane_pt = lines.index("== [pt] recorded: scripted:other  |  re-run: scripted:echo")
    assert "[error] out of memory" in lines[pane_pt + 3] and lines[pane_pt + 3].endswith("| Capital of Spain?")
    (saved,) = reruns.glob("*.json")
    assert lines[-1] == f"re-run saved to {saved} (play it with: workbench replay {saved})"
    assert [pane.spec for pane in load_session(saved).panes] == ["context:B", "scripted:echo"]


def test_rerun_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], test_runtimes: None) -> None:
    path = saved_session(tmp_path)
    assert main(["--sessions", str(tmp_path / "r"), "replay", str(path), "--actor", "context:Z", "--json"]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    data = json.loads(out.out)
    assert [pane["rerun_spec"] for pane in data["panes"]] == ["context:Z", "context:Z"]
    turn = data["panes"][1]["turns"][0]
    assert (turn["recorded"]["status"], turn["new"]["status"], turn["new"]["answer"]) == (
        "error", "done", "Z saw user=Capital of Spain?")
    assert Path(data["rerun_file"]).parent == tmp_path / "r"


def test_replay_on_a_terminal_strips_control_characters_from_the_file(tmp_path: Path) -> None:
    """Issue 11: escape sequences in a session (window title, screen clear) never reach the terminal."""
    import pty

    hostile = "\x1b]0;pwned\x07\x1b[2J\x1b[Hevil\rover\x9b31m"
    session = ChatSession(id="esc", name=f"name{hostile}", panes=[PaneRecord(id="p", spec="scripted:echo",
                                                                             title=hostile)], events=[
        PromptEvent(t=0.0, pane="p", correlation_id="1", message=ChatMessage(role="user", content=f"ask{hostile}")),
        ChunkEvent(t=0.1, pane="p", correlation_id="1", text=f"answer{hostile}\tend"),
        ErrorEvent(t=0.2, pane="p", correlation_id="1", error=f"boom{hostile}"),
    ])
    path = save_session(session, tmp_path / "esc.json")
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    process = subprocess.Popen([sys.executable, "-m", "workbench.cli", "replay", str(path), "--instant"],
                               stdout=follower, stderr=follower, env=env, cwd=REPO)
    os.close(follower)
    output = b""
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not data:
            break
        output += data
    os.close(leader)
    assert process.wait(timeout=60) == 0
    text = output.decode()
    assert "answerevilover31m\tend" in text and "boomevil" in text
    assert not any(ch in text for ch in "\x1b\x07\x9b"), repr(text)
    assert "\r" not in text.replace("\r\n", "\n")  # the terminal turns \n into \r\n; no other \r
    # Not a terminal: the text is passed on untouched (a pipe gets what the file holds).
    piped = workbench("replay", str(path), "--instant")
    assert "\x1b]0;pwned" in piped.stdout
