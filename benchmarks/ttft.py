"""Time to first token on short chat prompts: `torch:smollm2` in process and over HTTP, side by side.

Issue 17. Contenders, alternated request by request (the order rotates every round) so machine
noise falls on all alike, greedy, the 8 built-in short chat prompts (`bench.prompts`, set "short"),
each round's made new with a "Question N:" prefix (see `_fresh`; `--repeat-prompts` to repeat them):

* `in-process`: a `torch:smollm2` actor in this process, streamed through `actor.chat` (mailbox,
  concurrency slot, worker thread and back: what the app's panes get);
* `in-process, no prompt cache`: the same actor with its prompt cache cleared before each request
  (every request prefills the whole chat template, as a first-ever request would);
* `HTTP`: `workbench serve --actor torch:smollm2 --threads N` in a child process, streamed
  `/api/chat` over 127.0.0.1 with a kept-alive connection (what a client of our server gets); with
  `--serve-placement process thread`, once with the model in serve's worker process (its default)
  and once on a thread of the server (to see what the process hop costs);
* `llama-server` (only with `--llama-server PATH`): llama.cpp's server on the same GGUF, `-t N`,
  streamed `/v1/chat/completions`.

TTFT is client-side: request sent -> first chunk with text. For the in-process actor the worker's
breakdown (the actor's `stats()` details `first_token`) is printed too: chat template, tokenization,
prefill (and how many prompt tokens the prompt cache saved), first sampling step, first
detokenization, and the hops (actor mailbox + slot + thread hand-off in, queue back to the loop out).

    .venv/bin/python benchmarks/ttft.py                      # threads 1 and 2, 4 rounds
    .venv/bin/python benchmarks/ttft.py --threads 2 --rounds 2 --no-http
    .venv/bin/python benchmarks/ttft.py --llama-server ~/llama.cpp/build/bin/llama-server

Every figure is printed with the thread count and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402

from workbench.bench.prompts import builtin_sets  # noqa: E402
from workbench.engine import SamplingParams  # noqa: E402

SPEC = "torch:smollm2"
STEPS = ("template_s", "tokenize_s", "prefill_s", "first_sample_s", "first_detokenize_s")

Measure = Callable[[str], Awaitable[dict[str, float]]]


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prompts() -> list[str]:
    return [prompt.messages[0].text for prompt in builtin_sets()["short"]]


def _fresh(prompt: str, number: int) -> str:
    """`prompt` made new for this round (``Question N: ...``), the same text for every contender.
    llama-server keeps the KV of earlier prompts in RAM (``--cache-ram``, 8 GiB by default) and
    answers a repeated prompt without prefilling it (TTFT p50 26 ms at 1 thread against 55-62 ms
    for new prompts here); our prompt cache keeps earlier prompts too (32 MiB). A chat's next
    prompt is new, so each round's prompts are; ``--repeat-prompts`` measures the repeated case."""
    return f"Question {number}: {prompt}"


# ----- in process -----------------------------------------------------------------------------------------
class InProcess:
    def __init__(self, threads: int, max_tokens: int, cold: bool) -> None:
        from workbench.runtimes.registry import create_actor

        self.actor = create_actor(SPEC, threads=threads, placement="thread")
        self.max_tokens = max_tokens
        self.cold = cold

    async def start(self) -> None:
        self.actor.start()
        await self.actor.wait_ready()

    async def measure(self, prompt: str, cold: bool = False) -> dict[str, float]:
        # Both in-process contenders share one engine: start each request from a known cache, so
        # neither profits from the other having just run the same prompt. Warm: the cache holds the
        # chat template's preamble only (as after any other chat); cold: nothing.
        engine = getattr(self.actor, "engine", None)
        if engine is None:
            raise SystemExit("the in-process contenders need the actor's engine in this process")
        if cold:
            engine.prompt_cache.clear()
        else:
            one, other = (engine.chat_input_ids([{"role": "user", "content": text}]) for text in ("a", "b"))
            preamble = next(i for i, (x, y) in enumerate(zip(one, other)) if x != y)
            if engine.prompt_cache.ids[:preamble] != one[:preamble]:
                list(engine.generate(one[: preamble + 1], SamplingParams(max_new_tokens=1)))
            engine.prompt_cache.truncate(preamble)
        sent = time.perf_counter()
        first = None
        async for chunk in self.actor.chat(prompt, options={"temperature": 0, "max_tokens": self.max_tokens}):
            if first is None and (chunk.text or chunk.thinking):
                first = time.perf_counter()
        assert first is not None, "no text came back"
        row = {"ttft_s": first - sent}
        stats = await self.actor.stats()
        breakdown = (stats.details or {}).get("first_token") or {}
        if "started_at" in breakdown and "first_token_at" in breakdown:
            row |= {key: float(breakdown[key]) for key in (*STEPS, "prefill_cpu_s", "reused_tokens", "prompt_tokens")
                    if key in breakdown}
            row["hop_in_s"] = breakdown["started_at"] - sent
            row["hop_out_s"] = first - breakdown["first_token_at"] - breakdown.get("first_detokenize_s", 0.0)
        return row

    async def stop(self) -> None:
        await self.actor.stop()


# ----- over HTTP --------------------------------------------------------------------------------------------
class Server:
    """A server in a child process (never through a shell), streamed over a kept-alive connection."""

    def __init__(self, name: str, args: list[str], url: str, ready_path: str, max_tokens: int) -> None:
        self.name, self.args, self.url, self.ready_path, self.max_tokens = name, args, url, ready_path, max_tokens
        self.process: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None  # the server's stderr, once started
        self.client = httpx.AsyncClient(base_url=url, timeout=120)

    async def start(self) -> None:
        from workbench import foreign_env

        # stderr to a file, not a pipe nobody reads while it runs: llama-server logs every request
        # and would block writing once a pipe's 64 KiB filled. The environment is the caller's
        # without workbench's OMP_WAIT_POLICY, which made llama.cpp's 2-thread decode 4x slower.
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=self.log, env=foreign_env())
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                error = self.log.read().decode(errors="replace")
                raise SystemExit(f"{self.name} exited ({self.process.returncode}): {error[-2000:]}")
            try:
                if (await self.client.get(self.ready_path)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
        raise SystemExit(f"{self.name} did not come up within 600 s")

    async def measure(self, prompt: str) -> dict[str, float]:
        body, path = self.body(prompt)
        sent = time.perf_counter()
        first = None
        async with self.client.stream("POST", path, json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if first is None and self.has_text(line):
                    first = time.perf_counter()
        assert first is not None, f"{self.name}: no text came back"
        return {"ttft_s": first - sent}

    def body(self, prompt: str) -> tuple[dict[str, Any], str]:
        messages = [{"role": "user", "content": prompt}]
        return ({"model": "smollm2", "messages": messages, "stream": True,
                 "options": {"temperature": 0, "num_predict": self.max_tokens}}, "/api/chat")

    @staticmethod
    def has_text(line: str) -> bool:
        return bool(line.strip()) and bool(json.loads(line).get("message", {}).get("content"))

    async def stop(self) -> None:
        await self.client.aclose()
        if self.log is not None:
            self.log.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class LlamaServer(Server):
    def body(self, prompt: str) -> tuple[dict[str, Any], str]:
        return ({"messages": [{"role": "user", "content": prompt}], "stream": True, "temperature": 0,
                 "max_tokens": self.max_tokens}, "/v1/chat/completions")

    @staticmethod
    def has_text(line: str) -> bool:
        if not line.startswith("data:") or line.strip() == "data: [DONE]":
            return False
        choices = json.loads(line[5:]).get("choices") or [{}]
        return bool((choices[0].get("delta") or {}).get("content"))


# ----- one thread count --------------------------------------------------------------------------------------
def _ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):7.1f}" if values else "    n/a"


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


async def run_threads(threads: int, args: argparse.Namespace) -> None:
    from workbench.engine import default_smollm2_path

    prompts = _prompts()
    contenders: dict[str, Measure] = {}
    owners: list[Any] = []
    inproc = InProcess(threads, args.max_tokens, cold=False)
    owners.append(inproc)
    contenders["in-process"] = inproc.measure
    if not args.no_cold:
        contenders["in-process, no prompt cache"] = lambda prompt: inproc.measure(prompt, cold=True)
    for placement in [] if args.no_http else args.serve_placement:
        port = _free_port()
        ours = Server("workbench serve", [sys.executable, "-m", "workbench.cli", "serve", "--placement", placement,
                                          "--actor", SPEC, "--threads", str(threads), "--port", str(port)],
                      f"http://127.0.0.1:{port}", "/api/tags", args.max_tokens)
        owners.append(ours)
        contenders[f"HTTP serve ({placement}) /api/chat"] = ours.measure
    if args.llama_server:
        port = _free_port()
        llama = LlamaServer("llama-server", [args.llama_server, "-m", str(default_smollm2_path()), "-t", str(threads),
                                             "--host", "127.0.0.1", "--port", str(port), "-c", "2048"],
                            f"http://127.0.0.1:{port}", "/health", args.max_tokens)
        owners.append(llama)
        contenders["HTTP llama-server /v1/chat"] = llama.measure
    await asyncio.gather(*(owner.start() for owner in owners))
    try:
        names = list(contenders)
        for name in names:  # warm: not counted
            for prompt in prompts[:2]:
                await contenders[name](prompt)
        rows: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for round_number in range(args.rounds):
            order = names[round_number % len(names):] + names[: round_number % len(names)]
            for index, prompt in enumerate(prompts):
                if not args.repeat_prompts:
                    prompt = _fresh(prompt, round_number * len(prompts) + index + 1)
                for name in order:
                    rows[name].append(await contenders[name](prompt))
        print(f"\n== threads {threads}, {args.rounds} rounds x {len(prompts)} short prompts "
              f"({'repeated every round' if args.repeat_prompts else 'new every round'}), "
              f"{args.max_tokens} new tokens max, greedy; {_load()} ==")
        print(f"{'contender':34} {'TTFT p50 ms':>11} {'p90 ms':>8} {'n':>4}")
        for name in names:
            ttft = [row["ttft_s"] for row in rows[name]]
            print(f"{name:34} {_ms(ttft):>11} {1000 * _p90(ttft):8.1f} {len(ttft):4d}")
        for name in names:
            got = [row for row in rows[name] if "prefill_s" in row]
            if not got:
                continue
            print(f"\n  breakdown, {name} (medians, ms):")
            for key in ("hop_in_s", *STEPS, "hop_out_s"):
                print(f"    {key.removesuffix('_s'):20} {_ms([row[key] for row in got if key in row])}")
            print(f"    {'= TTFT':20} {_ms([row['ttft_s'] for row in got])}")
            print(f"    {'prefill, CPU time':20} {_ms([row['prefill_cpu_s'] for row in got if 'prefill_cpu_s' in row])}"
                  "  (of the worker thread: the whole prefill at 1 thread, its share at more)")
            prompt_tokens = statistics.median(row.get("prompt_tokens", 0) for row in got)
            reused = statistics.median(row.get("reused_tokens", 0) for row in got)
            print(f"    prompt tokens {prompt_tokens:.0f}, of which reused from the prompt cache {reused:.0f}")
        print(f"  ({_load()}, threads {threads})")
    finally:
        for owner in owners:
            await owner.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--no-http", action="store_true", help="skip `workbench serve`")
    parser.add_argument("--serve-placement", nargs="+", default=["process"], choices=["process", "thread"],
                        help="where `workbench serve` runs the model (process: its default; thread: no process hop)")
    parser.add_argument("--no-cold", action="store_true", help="skip the no-prompt-cache contender")
    parser.add_argument("--llama-server", metavar="PATH", help="a llama-server binary to measure alongside")
    parser.add_argument("--repeat-prompts", action="store_true",
                        help="send the same 8 prompts every round (llama-server then answers from its RAM prompt cache)")
    args = parser.parse_args()
    print(f"cpu cores {os.cpu_count()}, {_load()}")
    for threads in args.threads:
        asyncio.run(run_threads(threads, args))


if __name__ == "__main__":
    main()
