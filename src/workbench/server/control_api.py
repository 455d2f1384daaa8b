"""Control endpoints of `workbench serve`: inspect and steer the served actors from outside.

`workbench ps`, `workbench stop|restart ACTOR` and `workbench logs ACTOR` use these over HTTP on
127.0.0.1 (the server binds loopback unless told otherwise):

- `GET /workbench/actors`: every actor with its state, queue, what it runs now, placement, memory
  (RSS of the process holding its model) and counts.
- `GET /workbench/logs?actor=NAME[&limit=N]`: its recent messages with their input and the full text
  of their streams (bounded; see `metrics.streamlog`).
- `GET /workbench/messages?id=CORRELATION_ID`: one message.
- `POST /workbench/stop` `{"actor": NAME, "drain": false}`, `POST /workbench/restart` `{"actor": NAME}`.
- `GET /metrics`: the same figures as Prometheus text (version 0.0.4).

An actor is named by its actor name, its label (`openai:MODEL` for one made as `openai:-`), its
spec, or the model name it is served as. Errors are
`{"error": "..."}`, with 404 naming the actors there are.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from urllib.parse import parse_qs

from pydantic import BaseModel

from workbench.metrics.sampler import ResourceSampler
from workbench.metrics.streamlog import MessageRecord, StreamLog
from workbench.runtimes.base import ModelRuntimeActor
from workbench.server.bodies import BadRequest, json_object, validated
from workbench.server.http import Request, Responder
from workbench.server.routes import Route
from workbench.server.stream_journal import StreamJournal, load_stream_journal

PREFIX = "/workbench"


class ActorStatus(BaseModel):
    name: str
    spec: str
    label: str | None = None  # the name to show (ModelRuntimeActor.label); absent in older answers
    runtime: str
    family: str
    placement: str
    state: str
    queued: int
    running: str | None = None  # "<operation> <correlation id>" of the message running now
    requests: int
    errors: int
    restarts: int
    last_error: str | None = None
    rss_bytes: int | None = None
    cpu_percent: float | None = None


class ActorsAnswer(BaseModel):
    actors: list[ActorStatus]
    limit: int
    running: int
    waiting: int
    at: float


class LogsAnswer(BaseModel):
    actor: str
    messages: list[MessageRecord]


class ActorCommand(BaseModel):
    actor: str
    drain: bool = False


def actor_status(actor: ModelRuntimeActor, sampler: ResourceSampler) -> ActorStatus:
    current = actor.current
    sample = sampler.series.get(actor.name)
    latest = sample.latest if sample is not None else None
    return ActorStatus(
        name=actor.name, spec=actor.spec, label=actor.label, runtime=actor.runtime, family=actor.family,
        placement=actor.placement_label, state=str(actor.state), queued=actor.queued,
        running=f"{current.message.operation} {current.correlation_id}" if current is not None else None,
        requests=actor.requests, errors=actor.errors, restarts=actor.restarts,
        last_error=str(actor.last_error) if actor.last_error is not None else None,
        rss_bytes=latest.rss_bytes if latest else None, cpu_percent=latest.cpu_percent if latest else None,
    )


class ControlAPI:
    """The control routes over `actors`; `log` keeps their streams (one is made and installed when
    not given). `close()` stops listening."""

    def __init__(self, actors: Sequence[ModelRuntimeActor], aliases: dict[str, ModelRuntimeActor] | None = None,
                 log: StreamLog | None = None, journal: Path | str | None = None) -> None:
        """With `journal`, the messages of an earlier run are loaded from it and every message that
        ends is appended to it (`server/stream_journal.py`)."""
        self.actors = list(actors)
        self.aliases = dict(aliases or {})
        self._own_log = log is None
        self.log = log if log is not None else StreamLog().install()
        self.journal: StreamJournal | None = None
        if journal is not None:
            records, _ = load_stream_journal(journal)
            self.log.preload(records)
            self.journal = StreamJournal(journal)
            self.log.on_end = self.journal.append
        self.sampler = ResourceSampler()
        for actor in self.actors:
            self.sampler.watch(actor.name, actor.memory_target)

    def routes(self) -> list[Route]:
        return [
            Route("GET", f"{PREFIX}/actors", self.list_actors),
            Route("GET", f"{PREFIX}/logs", self.logs),
            Route("GET", f"{PREFIX}/messages", self.message),
            Route("POST", f"{PREFIX}/stop", self.stop),
            Route("POST", f"{PREFIX}/restart", self.restart),
            Route("GET", "/metrics", self.metrics),
        ]

    def close(self) -> None:
        if self._own_log:
            self.log.close()
        if self.journal is not None:
            self.log.on_end = None
            self.journal.close()

    def lookup(self, name: str) -> ModelRuntimeActor:
        for actor in self.actors:
            if name in (actor.name, actor.spec, actor.label):
                return actor
        if name in self.aliases:
            return self.aliases[name]
        known = ", ".join(actor.label for actor in self.actors) or "none"
        raise BadRequest(f"no actor {name!r} here (actors: {known})", 404)

    def statuses(self) -> ActorsAnswer:
        self.sampler.sample_once()
        limits = {id(actor.limit): actor.limit for actor in self.actors}
        return ActorsAnswer(
            actors=[actor_status(actor, self.sampler) for actor in self.actors],
            limit=max((limit.limit for limit in limits.values()), default=0),
            running=sum(limit.running for limit in limits.values()),
            waiting=sum(limit.waiting for limit in limits.values()),
            at=time.time(),
        )

    # ----- handlers ----------------------------------------------------------------------------------
    async def list_actors(self, request: Request, responder: Responder) -> None:
        await responder.send_json(200, self.statuses().model_dump(mode="json"))

    async def logs(self, request: Request, responder: Responder) -> None:
        await _answering(responder, self._logs, request)

    async def _logs(self, request: Request, responder: Responder) -> None:
        query = _query(request)
        actor = self.lookup(query.get("actor", ""))
        raw_limit = query.get("limit", "20")
        if not raw_limit.isdigit() or int(raw_limit) < 1:
            raise BadRequest(f"limit must be a positive whole number, not {raw_limit!r}")
        answer = LogsAnswer(actor=actor.name, messages=self.log.messages(actor.name, int(raw_limit)))
        await responder.send_json(200, answer.model_dump(mode="json"))

    async def message(self, request: Request, responder: Responder) -> None:
        correlation_id = _query(request).get("id", "")
        record = self.log.find(correlation_id)
        if record is None:
            await responder.send_json(404, {"error": f"no message {correlation_id!r} in the kept streams"})
            return
        await responder.send_json(200, record.model_dump(mode="json"))

    async def stop(self, request: Request, responder: Responder) -> None:
        await _answering(responder, self._command, request, "stop")

    async def restart(self, request: Request, responder: Responder) -> None:
        await _answering(responder, self._command, request, "restart")

    async def _command(self, request: Request, responder: Responder, what: str) -> None:
        command = validated(ActorCommand, json_object(request))
        actor = self.lookup(command.actor)
        if what == "stop":
            await actor.stop(drain=command.drain)
        else:
            await actor.restart()
        await responder.send_json(200, actor_status(actor, self.sampler).model_dump(mode="json"))

    async def metrics(self, request: Request, responder: Responder) -> None:
        await responder.send(200, prometheus_text(self.statuses()).encode(), "text/plain; version=0.0.4; charset=utf-8")


def prometheus_text(answer: ActorsAnswer) -> str:
    """The actors' figures in Prometheus' text format. Hand-written (a few lines) rather than pulling
    in a Prometheus client: the figures already exist, only their spelling is needed here."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, values: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in values:
            rendered = ",".join(f'{key}="{_escape(label)}"' for key, label in labels.items())
            lines.append(f"{name}{{{rendered}}} {value:g}" if rendered else f"{name} {value:g}")

    def per_actor(attribute: str) -> list[tuple[dict[str, str], float]]:
        return [({"actor": status.name, "runtime": status.runtime}, float(getattr(status, attribute)))
                for status in answer.actors if getattr(status, attribute) is not None]

    family("workbench_actor_requests_total", "counter", "Messages an actor ran.", per_actor("requests"))
    family("workbench_actor_errors_total", "counter", "Messages that failed.", per_actor("errors"))
    family("workbench_actor_restarts_total", "counter", "Times an actor was restarted.", per_actor("restarts"))
    family("workbench_actor_queue_depth", "gauge", "Messages waiting in the mailbox.", per_actor("queued"))
    family("workbench_actor_rss_bytes", "gauge", "RSS of the process holding the model.", per_actor("rss_bytes"))
    family("workbench_actor_up", "gauge", "1 while the actor is idle or busy.",
           [({"actor": s.name, "runtime": s.runtime}, float(s.state in ("idle", "busy"))) for s in answer.actors])
    family("workbench_concurrency_limit", "gauge", "Size of the concurrency limit.", [({}, answer.limit)])
    family("workbench_concurrency_running", "gauge", "Model actions running.", [({}, answer.running)])
    family("workbench_concurrency_waiting", "gauge", "Model actions waiting for a slot.", [({}, answer.waiting)])
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _query(request: Request) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(request.query, keep_blank_values=True).items()}


async def _answering(responder: Responder, handler: Callable[..., Awaitable[None]], request: Request,
                     *args: str) -> None:
    try:
        await handler(request, responder, *args)
    except BadRequest as error:
        if not responder.started:
            await responder.send_json(error.status, {"error": str(error)})
