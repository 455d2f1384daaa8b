"""The benchmark engine: the same workload against each actor at each concurrency level.

What "concurrency N" means: the client keeps N requests in flight at once (a closed loop: as one
finishes, the next is sent), and the actors' ConcurrencyLimit (the global one, normally) is raised to
at least N for the level, and put back after, so the limit itself does not hold them back. It is
never lowered: that would only starve other work sharing it (a loopback server's own actor, say). An actor still runs its mailbox one message at a time, so for
a single actor the extra requests wait in its mailbox: that queueing is part of what a client sees
and shows up in TTFT and E2E (which are measured from the moment of sending), while the request
throughput and aggregate tokens/s stay near the one-at-a-time figures. A runtime backed by a server
that batches (Ollama with OLLAMA_NUM_PARALLEL, say) could do better; this measures what workbench's
actors do.

Actors run one after another, never side by side, so one does not steal the other's CPU; an actor
the runner created is started just before its turn and stopped after it, so the memory sampled is
(as far as the process allows) that actor's. Warm-up requests run once per actor, before its first
level, and are not recorded. Memory and CPU of the process holding the model are sampled
throughout each level.

Each record keeps the answer's text and, when its prompt has an expectation, its score. With two
or more actors the run ends with their agreement, pair by pair (`bench.agreement`): text answers
compared from the records, embed vectors compared in memory (vectors are not saved).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from workbench.actors.actor import Reply
from workbench.bench.agreement import answers_by_actor, text_agreement, vector_agreement
from workbench.bench.machine import library_versions, machine_info, server_version
from workbench.bench.prompts import chat_messages, embed_inputs, load_prompts, prompt_text
from workbench.bench.scoring import score_answer
from workbench.bench.summary import summarize_level
from workbench.errors import BenchmarkError, MessageCancelled
from workbench.metrics.sampler import ResourceSampler
from workbench.runtimes.base import ModelRuntimeActor
from workbench.runtimes.registry import create_actor
from workbench.runtimes.types import GenerationOptions
from workbench.redact import redacted_labels
from workbench.sessions.schema import (
    ActorMemory,
    BenchmarkConfig,
    BenchmarkPrompt,
    BenchmarkRun,
    LevelSummary,
    PairAgreement,
    RequestRecord,
    ResourceRecord,
)

T = TypeVar("T")
DEFAULT_SAMPLE_INTERVAL_S = 0.25


@dataclass(frozen=True, slots=True)
class BenchProgress:
    """Where a run is: `done` of `total` measured requests, and what it is doing now."""

    done: int
    total: int
    actor: str
    concurrency: int
    phase: str  # loading | warmup | measuring | finished | stopped
    errors: int = 0

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


ProgressCallback = Callable[[BenchProgress], None]
ActorFactory = Callable[..., ModelRuntimeActor]


def new_run_id() -> str:
    return f"bench-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class BenchmarkRunner:
    """Runs one benchmark. Give it a config; it creates the actors from their specs (and stops them
    after), or give it already started actors (an app's panes), which it uses and leaves running.

    `request_stop()` (Ctrl-C) cancels the requests in flight and ends the run early; `run()` then
    returns what finished, with `notes["interrupted"]` set.
    """

    def __init__(
        self,
        config: BenchmarkConfig,
        *,
        prompts: Sequence[BenchmarkPrompt] | None = None,
        actors: Sequence[ModelRuntimeActor] | None = None,
        progress: ProgressCallback | None = None,
        sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
        actor_factory: ActorFactory = create_actor,
    ) -> None:
        self.prompts = list(prompts) if prompts is not None else load_prompts(config.prompts)
        if not self.prompts:
            raise BenchmarkError("a benchmark needs at least one prompt")
        self.given = list(actors) if actors is not None else None
        if self.given is not None:
            config = config.model_copy(update={"actors": [actor.spec for actor in self.given]})
        validate_config(config)
        self.config = config
        self.specs = list(config.actors)  # as asked; an actor's entry becomes its resolved spec once ready
        self.labels = redacted_labels(self.specs)  # saved in the run: no credentials
        self.progress = progress
        self.sampler = ResourceSampler(sample_interval_s, capacity=1_000_000)
        self.actor_factory = actor_factory
        self.records: list[RequestRecord] = []
        self.samples: list[ResourceRecord] = []
        self.actor_memory: list[ActorMemory] = []
        self.summaries: list[LevelSummary] = []
        self.vectors: dict[str, dict[int, list[list[float]]]] = {}  # embed runs: label -> prompt -> batch
        self.versions = library_versions()
        self.notes: dict[str, Any] = {}
        self._stop = asyncio.Event()
        self._in_flight: set[Reply[Any]] = set()
        self._started_wall = time.time()
        self._done = 0

    # ----- the plan -----------------------------------------------------------------------------------
    @property
    def per_level(self) -> int:
        return len(self.prompts) * self.config.repeat

    @property
    def total(self) -> int:
        return len(self.labels) * len(self.config.concurrency) * self.per_level

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Stop soon: requests in flight are cancelled and not recorded; what finished is kept."""
        if self._stop.is_set():
            return
        self._stop.set()
        for reply in list(self._in_flight):
            reply.cancel()

    def options(self) -> GenerationOptions:
        if self.config.max_tokens is None:
            return self.config.options
        return self.config.options.model_copy(update={"max_tokens": self.config.max_tokens})

    # ----- running --------------------------------------------------------------------------------------
    async def run(self) -> BenchmarkRun:
        self._started_wall = time.time()
        started = time.perf_counter()
        self.sampler.start()
        try:
            for index, label in enumerate(self.labels):
                if self.stopping:
                    break
                await self._run_actor(label, index)
        finally:
            await self.sampler.stop()
        self.notes["elapsed_s"] = time.perf_counter() - started
        if self.stopping:
            self.notes["interrupted"] = True
        self._report(BenchProgress(self._done, self.total, "", 0, "stopped" if self.stopping else "finished",
                                   self._errors()))
        return self.result()

    def result(self) -> BenchmarkRun:
        """The run as it stands (complete after `run()`, partial before)."""
        return BenchmarkRun(
            id=new_run_id(),
            machine=machine_info(),
            versions=dict(self.versions),
            config=self.config,
            records=list(self.records),
            samples=list(self.samples),
            summaries=list(self.summaries),
            prompt_set=list(self.prompts),
            notes=dict(self.notes),
            agreement=self.agreement(),
            actor_memory=list(self.actor_memory),
        )

    def agreement(self) -> list[PairAgreement]:
        """Pairwise agreement of the actors' answers so far (empty with one actor)."""
        if len(self.labels) < 2:
            return []
        if self.config.op == "embed":
            return vector_agreement(self.vectors, self.labels)
        return text_agreement(answers_by_actor(self.records), self.labels)

    async def _run_actor(self, label: str, index: int) -> None:
        first_level = self.config.concurrency[0]
        self._report(BenchProgress(self._done, self.total, label, first_level, "loading", self._errors()))
        owned = self.given is None
        try:
            actor = self.given[index] if self.given is not None else self._create(self.config.actors[index])
        except Exception as error:  # a spec that cannot become an actor: every request is an error
            self._fail_all(label, describe_error(error))
            return
        try:
            ready = await self._unless_stopped(actor.wait_ready())
            if ready is _STOPPED:
                return
            if ready is not None:  # the actor failed to start; its requests fail, and say why
                self.notes.setdefault("actor_errors", {})[label] = ready
            else:
                label = self._resolved_label(actor, index)
                if actor.family != "in-process":
                    version = await server_version(actor)
                    if version:
                        self.versions[f"server:{label}"] = version
                self.sampler.watch(label, actor.memory_target)
                self.sampler.sample_once()  # primes the CPU counter before the first level
                await self._warm_up(actor, label, first_level)
            for level in self.config.concurrency:
                if self.stopping:
                    break
                await self._run_level(actor, label, level)
            if ready is None:
                await self._record_memory(actor, label)
        finally:
            self.sampler.unwatch(label)
            if owned:
                with contextlib.suppress(Exception):
                    await actor.stop(drain=False)

    def _resolved_label(self, actor: ModelRuntimeActor, index: int) -> str:
        """The actor's label once it started: a spec resolved at start (`openai:-@URL` names the only
        model its server lists) records as the model it really ran, not as `-`. Only this actor's label
        and later ones can change, and none of them has a record yet. `config.actors` keeps the specs as
        asked, so running the file's config again resolves afresh."""
        if actor.label != actor.name:  # its model was resolved at start (see ModelRuntimeActor.label)
            self.specs[index] = actor.spec
            self.labels = redacted_labels(self.specs)
        return self.labels[index]

    async def _record_memory(self, actor: ModelRuntimeActor, label: str) -> None:
        """The actor's own memory (its worker's process, baseline and model), when the runtime knows it."""
        with contextlib.suppress(Exception):  # a dead worker: its requests already say so
            memory = (await actor.stats()).memory
            if memory is not None:
                self.actor_memory.append(ActorMemory(actor=label, **memory.summary()))

    def _create(self, spec: str) -> ModelRuntimeActor:
        options: dict[str, Any] = {}
        if self.config.threads is not None:
            options["threads"] = self.config.threads
        if self.config.placement is not None:
            options["placement"] = self.config.placement
        actor = self.actor_factory(spec, **options)
        actor.start()
        return actor

    async def _warm_up(self, actor: ModelRuntimeActor, label: str, level: int) -> None:
        for number in range(self.config.warmup):
            if self.stopping:
                return
            self._report(BenchProgress(self._done, self.total, label, level, "warmup", self._errors()))
            await self._request(actor, label, level, number % len(self.prompts), -1)

    async def _run_level(self, actor: ModelRuntimeActor, label: str, level: int) -> None:
        jobs = [(prompt, repeat) for repeat in range(self.config.repeat) for prompt in range(len(self.prompts))]
        queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)
        level_records: list[RequestRecord] = []
        limit = actor.limit
        previous = limit.limit
        limit.set_limit(max(level, previous))
        wall_start = time.time()
        started = time.perf_counter()
        self._report(BenchProgress(self._done, self.total, label, level, "measuring", self._errors()))

        async def client() -> None:
            while not self.stopping and not queue.empty():
                prompt, repeat = queue.get_nowait()
                record = await self._request(actor, label, level, prompt, repeat)
                if record is not None:
                    level_records.append(record)
                    self.records.append(record)
                    self._done += 1
                    self._report(BenchProgress(self._done, self.total, label, level, "measuring", self._errors()))

        try:
            await asyncio.gather(*(client() for _ in range(min(level, len(jobs)))))
        finally:
            limit.set_limit(previous)
        duration = time.perf_counter() - started
        self.sampler.sample_once()
        level_samples = [
            ResourceRecord(actor=label, t=s.t - self._started_wall, rss_bytes=s.rss_bytes, cpu_percent=s.cpu_percent)
            for s in self.sampler.series.get(label, [])
            if s.t >= wall_start
        ]
        self.samples.extend(level_samples)
        if level_records or not self.stopping:
            self.summaries.append(summarize_level(label, level, level_records, level_samples, duration))

    async def _request(
        self, actor: ModelRuntimeActor, label: str, level: int, prompt_index: int, repeat: int
    ) -> RequestRecord | None:
        """Send one request and wait for all of it; None when it was cancelled by a stop."""

        def record(**fields: Any) -> RequestRecord:
            return RequestRecord(actor=label, concurrency=level, prompt_index=prompt_index,
                                 repeat=max(repeat, 0), **fields)

        try:
            reply = self._send(actor, self.prompts[prompt_index])
        except Exception as error:  # refused before it was queued (not supported, bad input...)
            return record(ok=False, error=describe_error(error))
        self._in_flight.add(reply)
        try:
            result = await reply
        except MessageCancelled as error:
            return None if self.stopping else record(ok=False, error=describe_error(error))
        except Exception as error:
            return record(ok=False, error=describe_error(error))
        finally:
            self._in_flight.discard(reply)
        if self.config.op == "embed":
            if repeat >= 0:
                self.vectors.setdefault(label, {}).setdefault(prompt_index, [list(v) for v in result.vectors])
            return record(ok=True, metrics=result.metrics)
        expected = self.prompts[prompt_index].expected
        score = score_answer(expected, result.text) if expected is not None else None
        return record(ok=True, metrics=result.metrics, answer=result.text,
                      score=None if score is None else score.value, score_note=None if score is None else score.note)

    def _send(self, actor: ModelRuntimeActor, prompt: BenchmarkPrompt) -> Reply[Any]:
        op = self.config.op
        if op == "embed":
            return actor.embed(embed_inputs(prompt), options=self.config.options)
        if op == "generate":
            return actor.generate(prompt_text(prompt), options=self.options())
        return actor.chat(chat_messages(prompt), options=self.options())

    def _fail_all(self, label: str, error: str) -> None:
        self.notes.setdefault("actor_errors", {})[label] = error
        for level in self.config.concurrency:
            records = [
                RequestRecord(actor=label, concurrency=level, prompt_index=prompt, repeat=repeat, ok=False, error=error)
                for repeat in range(self.config.repeat) for prompt in range(len(self.prompts))
            ]
            self.records.extend(records)
            self._done += len(records)
            self.summaries.append(summarize_level(label, level, records, [], 0.0))
        self._report(BenchProgress(self._done, self.total, label, self.config.concurrency[-1], "measuring",
                                   self._errors()))

    async def _unless_stopped(self, waiting: Awaitable[None]) -> Any:
        """Wait for `waiting`; _STOPPED if a stop came first, the error's text if it failed, else None."""
        task = asyncio.ensure_future(waiting)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            return _STOPPED
        error = task.exception()
        return describe_error(error) if error is not None else None

    def _errors(self) -> int:
        return sum(1 for record in self.records if not record.ok)

    def _report(self, progress: BenchProgress) -> None:
        if self.progress is not None:
            with contextlib.suppress(Exception):  # a broken progress display must not break the run
                self.progress(progress)


_STOPPED = object()


def validate_config(config: BenchmarkConfig) -> None:
    """Clear errors for a config that cannot run (the CLI checks the same before loading anything)."""
    from workbench.actors.limit import LIMIT_MAX, LIMIT_MIN

    if not config.actors:
        raise BenchmarkError("a benchmark needs at least one actor")
    if not config.concurrency:
        raise BenchmarkError("a benchmark needs at least one concurrency level")
    for level in config.concurrency:
        if not LIMIT_MIN <= level <= LIMIT_MAX:
            raise BenchmarkError(f"concurrency {level} is outside {LIMIT_MIN}..{LIMIT_MAX}")
    if config.repeat < 1:
        raise BenchmarkError(f"repeat must be at least 1, not {config.repeat}")
    if config.warmup < 0:
        raise BenchmarkError(f"warmup cannot be negative ({config.warmup})")
    if config.max_tokens is not None and config.max_tokens < 1:
        raise BenchmarkError(f"max tokens must be at least 1, not {config.max_tokens}")
    if config.threads is not None and config.threads < 1:
        raise BenchmarkError(f"threads must be at least 1, not {config.threads}")


async def run_benchmark(config: BenchmarkConfig, **kwargs: Any) -> BenchmarkRun:
    """Convenience: build a runner and run it."""
    return await BenchmarkRunner(config, **kwargs).run()
