"""Key press → character shown in the prompt box, while 4 panes stream.

Runs the real app headless (Textual's Pilot) with four ScriptedActor panes streaming long answers
(a token every `--delay` seconds each, so the UI keeps re-rendering Markdown), types characters into
the prompt box one at a time, and times each from the key press (sent through the driver,
as a terminal's key is) until the prompt box holds the character; the screen paints it at its next
update (Textual refreshes at up to 60 frames a second, so add at most ~17 ms). Prints p50/p95/max (goal: p95 under 50 ms on this machine).

    .venv/bin/python benchmarks/ui_latency.py [--keys 200] [--delay 0.005]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time

from textual import events
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.scripted import ScriptedActor  # noqa: E402
from workbench.app.main import WorkbenchApp  # noqa: E402
from workbench.app.widgets.prompt_box import PromptBox  # noqa: E402
from workbench.app.widgets.reply_view import ReplyView  # noqa: E402
from workbench.metrics.request import percentile  # noqa: E402


async def measure(keys: int, delay_s: float, panes: int, args_words: int = 400) -> tuple[list[float], int]:
    specs = [f"scripted:p{n}" for n in range(panes)]
    with tempfile.TemporaryDirectory() as folder:
        app = WorkbenchApp(specs, folder, actor_factory=lambda spec: ScriptedActor(spec, delay_s=delay_s, name=spec),
                           discover_ollama=False, sample_interval_s=1.0)
        app.limit.set_limit(max(app.limit.limit, panes))
        async with app.run_test(size=(200, 50)) as pilot:
            box = app.query_one(PromptBox)
            box.value = " ".join(f"token{n}" for n in range(args_words))
            await pilot.press("ctrl+t")
            await pilot.pause(0.3)
            latencies = []
            driver = app._driver
            assert driver is not None
            for index in range(keys):
                char = "abcdefghij"[index % 10]
                before = box.value
                start = time.perf_counter()
                driver.send_message(events.Key(char, char))  # the path a terminal's key takes
                while box.value == before:
                    await asyncio.sleep(0)
                latencies.append(time.perf_counter() - start)
                await asyncio.sleep(0.02)  # typing pace: ~50 keys a second at most
                if index % 40 == 39:
                    box.value = ""
            streaming = sum(1 for view in app.query(ReplyView).results(ReplyView) if not view.finished)
            for pane in app.panes:
                pane.cancel()
    return latencies, streaming


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.005, help="seconds between tokens per pane")
    parser.add_argument("--panes", type=int, default=4)
    args = parser.parse_args()
    latencies, streaming = asyncio.run(measure(args.keys, args.delay, args.panes))
    ms = [value * 1000 for value in latencies]
    print(f"{args.panes} panes streaming ({streaming} still streaming at the end), {len(ms)} key presses")
    print(f"key → shown: p50 {percentile(ms, 50):.1f} ms · p95 {percentile(ms, 95):.1f} ms · max {max(ms):.1f} ms"
          f"  (goal p95 < 50 ms)")


if __name__ == "__main__":
    main()
