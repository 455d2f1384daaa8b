"""The OpenTelemetry side of `workbench.metrics.otel`: imported only when telemetry is switched on.

`Telemetry` listens to every actor's events (`actors.events.add_global_listener`) and turns each
message into one span, from the moment it was sent to its end:

- name `"<operation> <model>"` (GenAI convention), attributes `gen_ai.operation.name`,
  `gen_ai.request.model`, `gen_ai.usage.input_tokens` / `output_tokens`, and `workbench.actor`,
  `workbench.actor.spec`, `workbench.runtime`, `workbench.placement`, `workbench.correlation_id`,
  `workbench.queued_s`, `workbench.ttft_s`, `workbench.e2e_s`, `workbench.outcome` (ok, error,
  cancelled);
- events `started` (left the mailbox, holds its concurrency slot) and `first_token`;
- status ERROR with the exception recorded when the message failed.

While a message runs its span is the current one in the actor's task, so `trace_headers()` gives
REST runtimes the W3C `traceparent` of that span and a tracing backend sees the server's spans in the
same trace.

Metrics (by `workbench.actor`, `workbench.runtime`, `gen_ai.operation.name`): request count by
outcome, errors by type, histograms of TTFT, ITL, E2E, queued time and output tokens/s, token
counters; observed on collection: queue depth and RSS per actor, running/waiting/limit of each
concurrency limit in use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, Status, StatusCode

from workbench import __version__
from workbench.actors import events
from workbench.actors.events import ActorEvent, add_global_listener
from workbench.actors.kinds import message_kind
from workbench.metrics.sampler import ResourceSampler
from workbench.redact import redact_text

log = logging.getLogger(__name__)

SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]
RATE_BUCKETS = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
INSTRUMENTATION = "workbench"
_OPEN_SPANS_MAX = 10_000  # a message whose end never comes (its actor vanished) must not grow forever


@dataclass
class _Open:
    """A message in flight: its span, and what we learn about it along the way."""

    span: Span
    attributes: dict[str, Any]
    first_token: bool = False
    metrics: Any = None  # the RequestMetrics of the final chunk
    token: object | None = None  # context token while the span is current in the actor's task
    task: asyncio.Task[Any] | None = None
    sent_ns: int = 0


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    _open: dict[tuple[str, str], _Open] = field(default_factory=dict)
    _actors: weakref.WeakValueDictionary[str, Any] = field(default_factory=weakref.WeakValueDictionary)
    _remove_listener: Any = None
    _sampler: ResourceSampler = field(default_factory=ResourceSampler)  # reused: it keeps process handles

    # ----- construction ------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        mode: str | None = None,
        *,
        span_exporter: SpanExporter | None = None,
        metric_reader: MetricReader | None = None,
        service_name: str | None = None,
    ) -> Telemetry:
        """Providers of our own (not the process-wide globals, which can be set only once), with the
        exporters `mode` asks for, or the given in-memory exporter/reader."""
        resource = Resource.create({
            "service.name": service_name or os.environ.get("OTEL_SERVICE_NAME") or "workbench",
            "service.version": __version__,
        })
        tracer_provider = TracerProvider(resource=resource)
        readers: list[MetricReader] = []
        if span_exporter is not None:
            tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        if metric_reader is not None:
            readers.append(metric_reader)
        if mode == "console":
            tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
        elif mode == "otlp":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        telemetry = cls(tracer_provider, meter_provider)
        telemetry._make_instruments()
        return telemetry

    def _make_instruments(self) -> None:
        self.tracer = self.tracer_provider.get_tracer(INSTRUMENTATION, __version__)
        meter = self.meter_provider.get_meter(INSTRUMENTATION, __version__)
        self.requests = meter.create_counter(
            "workbench.actor.requests", unit="{request}", description="messages an actor finished, by outcome")
        self.errors = meter.create_counter(
            "workbench.actor.errors", unit="{error}", description="messages that failed, by error type")
        self.tokens = meter.create_counter(
            "workbench.actor.tokens", unit="{token}", description="tokens in and out (gen_ai.token.type)")
        self.ttft = meter.create_histogram(
            "workbench.actor.ttft", unit="s", description="send to first output token",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS)
        self.itl = meter.create_histogram(
            "workbench.actor.itl", unit="s", description="gaps between consecutive token-bearing chunks",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS)
        self.e2e = meter.create_histogram(
            "workbench.actor.e2e", unit="s", description="send to the end of the response",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS)
        self.queued = meter.create_histogram(
            "workbench.actor.queued", unit="s", description="send to start (mailbox and concurrency slot)",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS)
        self.tokens_per_s = meter.create_histogram(
            "workbench.actor.output_tokens_per_s", unit="{token}/s", description="output tokens / E2E",
            explicit_bucket_boundaries_advisory=RATE_BUCKETS)
        meter.create_observable_gauge(
            "workbench.actor.queue_depth", [self._observe_queues], unit="{message}",
            description="messages waiting in the actor's mailbox")
        meter.create_observable_gauge(
            "workbench.actor.memory.rss", [self._observe_rss], unit="By",
            description="RSS of the process that holds the actor's model")
        meter.create_observable_gauge(
            "workbench.concurrency.running", [self._observe_limits("running")], unit="{message}",
            description="model actions running under the concurrency limit")
        meter.create_observable_gauge(
            "workbench.concurrency.waiting", [self._observe_limits("waiting")], unit="{message}",
            description="model actions waiting for a slot")
        meter.create_observable_gauge(
            "workbench.concurrency.limit", [self._observe_limits("limit")], unit="{message}",
            description="the concurrency limit's size")

    # ----- lifecycle -------------------------------------------------------------------------------------
    def install(self) -> None:
        if self._remove_listener is None:
            self._remove_listener = add_global_listener(self.on_event)

    def shutdown(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        for key in list(self._open):
            self._end(key, "abandoned", None)
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

    def watch(self, actor: Any) -> None:
        """Know `actor` by name, for its attributes and the observed gauges (done on its first event
        when the event carries the actor; call it for actors that may stay silent)."""
        self._actors[actor.name] = actor

    def trace_headers(self) -> dict[str, str] | None:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier or None

    @contextmanager
    def remote_parent(self, headers: Mapping[str, str]) -> Iterator[None]:
        token = otel_context.attach(propagate.extract(dict(headers)))
        try:
            yield
        finally:
            otel_context.detach(token)

    # ----- events -------------------------------------------------------------------------------------------
    def on_event(self, event: ActorEvent) -> None:
        source = getattr(event, "source", None)
        if source is not None and event.actor not in self._actors:
            self._actors[event.actor] = source
        if event.correlation_id is None:
            return
        key = (event.actor, event.correlation_id)
        kind = event.kind
        if kind == getattr(events, "QUEUED", "queued"):
            self._begin(key, event, sent_ns=int(event.at * 1e9))
        elif kind == events.STARTED:
            self._started(key, event)
        elif kind == events.CHUNK:
            self._chunk(key, event)
        elif kind == events.DONE:
            self._end(key, "ok", event)
        elif kind == events.ERROR:
            self._end(key, "error", event)
        elif kind == events.CANCELLED:
            self._end(key, "cancelled", event)

    def _attributes(self, event: ActorEvent) -> dict[str, Any]:
        actor = self._actors.get(event.actor)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": event.operation or "",
            "workbench.message.kind": message_kind(event.operation or ""),
            "workbench.actor": event.actor,
            "workbench.correlation_id": event.correlation_id or "",
        }
        if actor is not None:
            for name, value in (
                ("gen_ai.request.model", getattr(actor, "model", None)),
                ("workbench.actor.spec", getattr(actor, "spec", None)),
                ("workbench.runtime", getattr(actor, "runtime", None)),
                ("workbench.placement", getattr(actor, "placement_label", None)),
            ):
                if value is not None:  # a spec's URL may carry user:password@: never exported
                    attributes[name] = redact_text(str(getattr(value, "value", value)))
        return attributes

    def _begin(self, key: tuple[str, str], event: ActorEvent, sent_ns: int) -> _Open:
        if len(self._open) >= _OPEN_SPANS_MAX:
            self._end(next(iter(self._open)), "abandoned", None)
        attributes = self._attributes(event)
        model = attributes.get("gen_ai.request.model") or event.actor
        span = self.tracer.start_span(f"{event.operation} {model}", kind=trace.SpanKind.CLIENT,
                                      attributes=attributes, start_time=sent_ns)
        record = _Open(span, attributes, sent_ns=sent_ns)
        self._open[key] = record
        return record

    def _started(self, key: tuple[str, str], event: ActorEvent) -> None:
        queued_s = float(event.data) if isinstance(event.data, int | float) else None
        record = self._open.get(key)
        if record is None:  # no `queued` event seen: the span starts when the message was sent
            started_ns = int(event.at * 1e9)
            record = self._begin(key, event, started_ns - int((queued_s or 0.0) * 1e9))
        if queued_s is not None:
            record.span.set_attribute("workbench.queued_s", queued_s)
            self.queued.record(queued_s, self._metric_attributes(record))
        record.span.add_event("started", timestamp=int(event.at * 1e9))
        # Current in the actor's task while the message runs: outgoing HTTP requests carry it.
        record.token = otel_context.attach(trace.set_span_in_context(record.span))
        record.task = _current_task()

    def _chunk(self, key: tuple[str, str], event: ActorEvent) -> None:
        record = self._open.get(key)
        if record is None:
            return
        chunk = event.data
        if not record.first_token and (getattr(chunk, "text", "") or getattr(chunk, "thinking", "")):
            record.first_token = True
            record.span.add_event("first_token", timestamp=int(event.at * 1e9))
        metrics = getattr(chunk, "metrics", None)
        if metrics is not None:
            record.metrics = metrics

    def _end(self, key: tuple[str, str], outcome: str, event: ActorEvent | None) -> None:
        record = self._open.pop(key, None)
        if record is None:
            return
        span = record.span
        if record.token is not None and record.task is _current_task():
            otel_context.detach(record.token)
        metrics = record.metrics
        data = event.data if event is not None else None
        if metrics is None and outcome == "ok":
            metrics = getattr(data, "metrics", None)  # embed: the result carries them
        labels = self._metric_attributes(record)
        span.set_attribute("workbench.outcome", outcome)
        if metrics is not None:
            self._record_metrics(span, labels, metrics)
        if outcome == "error" and isinstance(data, BaseException):
            span.record_exception(data)
            span.set_status(Status(StatusCode.ERROR, f"{type(data).__name__}: {data}"))
            self.errors.add(1, labels | {"error.type": type(data).__name__})
        elif outcome == "ok":
            span.set_status(Status(StatusCode.OK))
        self.requests.add(1, labels | {"workbench.outcome": outcome})
        span.end(end_time=int(event.at * 1e9) if event is not None else None)

    def _record_metrics(self, span: Span, labels: dict[str, Any], metrics: Any) -> None:
        if metrics.input_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", metrics.input_tokens)
            self.tokens.add(metrics.input_tokens, labels | {"gen_ai.token.type": "input"})
        if metrics.output_tokens is not None:
            span.set_attribute("gen_ai.usage.output_tokens", metrics.output_tokens)
            self.tokens.add(metrics.output_tokens, labels | {"gen_ai.token.type": "output"})
        if metrics.ttft_s is not None:
            span.set_attribute("workbench.ttft_s", metrics.ttft_s)
            self.ttft.record(metrics.ttft_s, labels)
        span.set_attribute("workbench.e2e_s", metrics.e2e_s)
        self.e2e.record(metrics.e2e_s, labels)
        for gap in metrics.itl_s:
            self.itl.record(gap, labels)
        rate = metrics.output_tokens_per_s
        if rate is not None:
            self.tokens_per_s.record(rate, labels)

    @staticmethod
    def _metric_attributes(record: _Open) -> dict[str, Any]:
        """Low-cardinality labels: never the correlation id."""
        keep = ("workbench.actor", "workbench.runtime", "gen_ai.operation.name")
        return {name: record.attributes[name] for name in keep if name in record.attributes}

    # ----- observed gauges -------------------------------------------------------------------------------
    def _live(self) -> Iterator[Any]:
        return iter(list(self._actors.values()))

    def _observe_queues(self, options: CallbackOptions) -> Iterable[Observation]:
        for actor in self._live():
            yield Observation(int(getattr(actor, "queued", 0)), {"workbench.actor": actor.name})

    def _observe_rss(self, options: CallbackOptions) -> Iterable[Observation]:
        for actor in self._live():
            if hasattr(actor, "memory_target"):
                self._sampler.watch(actor.name, actor.memory_target)
        for name, sample in self._sampler.sample_once().items():
            yield Observation(sample.rss_bytes, {"workbench.actor": name})

    def _observe_limits(self, figure: str) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            seen: set[int] = set()
            for actor in self._live():
                limit = getattr(actor, "limit", None)
                if limit is None or id(limit) in seen:
                    continue
                seen.add(id(limit))
                yield Observation(int(getattr(limit, figure)), {"workbench.limit": f"limit-{len(seen)}"})
        return observe


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None

