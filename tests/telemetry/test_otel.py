"""OpenTelemetry: spans and metrics for real streamed requests over loopback HTTP (the Ollama REST
runtime), a cancelled one and a failed one, with the SDK's in-memory exporter and reader; the W3C
`traceparent` header reaching the server; and nothing imported while telemetry is off."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

# The `otel` extra: `make test` installs it, so a missing one fails here instead of skipping.

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tests.telemetry.support import RecordingOllama
from workbench.errors import MessageCancelled, RuntimeHTTPError
from workbench.metrics import otel
from workbench.runtimes.ollama_rest import OllamaRESTRuntimeActor


@pytest.fixture
def telemetry() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    otel.enable(span_exporter=spans, metric_reader=reader)
    try:
        yield spans, reader
    finally:
        otel.disable()


@pytest.fixture
async def server() -> AsyncIterator[RecordingOllama]:
    recording = RecordingOllama()
    await recording.start()
    yield recording
    await recording.close()


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    points: dict[str, list[Any]] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    return points


async def test_streamed_cancelled_and_failed_requests_give_spans_and_metrics(telemetry, server) -> None:
    spans, reader = telemetry
    actors = {name: OllamaRESTRuntimeActor(name, host=server.url) for name in ("good", "slow", "broken")}
    try:
        chunks = [chunk async for chunk in actors["good"].chat("hi")]
        assert "".join(chunk.text for chunk in chunks) == "Hello"

        slow = actors["slow"].chat("hi")
        stream = slow.__aiter__()
        first = await stream.__anext__()  # the first token arrived; then the server stalls
        assert first.text == "Hel"
        slow.cancel()
        with pytest.raises(MessageCancelled):
            async for _ in stream:
                pass

        with pytest.raises(RuntimeHTTPError, match="exit status 2"):
            await actors["broken"].chat("hi")
    finally:
        await asyncio.gather(*(actor.stop() for actor in actors.values()))

    by_model = {span.attributes["gen_ai.request.model"]: span for span in spans.get_finished_spans()}
    good = by_model["good"]
    assert good.name == "chat good"
    assert good.attributes["workbench.outcome"] == "ok"
    assert good.attributes["workbench.message.kind"] == "query"
    assert good.attributes["workbench.runtime"] == "ollama-rest"
    assert good.attributes["workbench.placement"] == "server"
    assert good.attributes["workbench.actor.spec"].startswith("ollama-rest:good@")
    assert good.attributes["gen_ai.usage.input_tokens"] == 10  # Ollama's prompt_eval_count
    assert good.attributes["gen_ai.usage.output_tokens"] == 20  # eval_count
    assert good.attributes["workbench.queued_s"] >= 0
    assert 0 < good.attributes["workbench.ttft_s"] <= good.attributes["workbench.e2e_s"]
    assert len(good.attributes["workbench.correlation_id"]) == 16
    names = [event.name for event in good.events]
    assert names == ["started", "first_token"]
    first_token = good.events[1]
    assert good.start_time < first_token.timestamp < good.end_time
    assert good.status.status_code == StatusCode.OK

    cancelled = by_model["slow"]
    assert cancelled.attributes["workbench.outcome"] == "cancelled"
    assert [event.name for event in cancelled.events] == ["started", "first_token"]
    assert cancelled.status.status_code == StatusCode.UNSET

    failed = by_model["broken"]
    assert failed.attributes["workbench.outcome"] == "error"
    assert failed.status.status_code == StatusCode.ERROR
    assert "exit status 2" in failed.status.description
    assert [event.name for event in failed.events] == ["started", "exception"]

    points = metric_points(reader)
    outcomes = {(p.attributes["workbench.actor"], p.attributes["workbench.outcome"]): p.value
                for p in points["workbench.actor.requests"]}
    assert outcomes == {("ollama-rest:good", "ok"): 1, ("ollama-rest:slow", "cancelled"): 1,
                        ("ollama-rest:broken", "error"): 1}
    errors = points["workbench.actor.errors"]
    assert [(p.attributes["error.type"], p.value) for p in errors] == [("RuntimeHTTPError", 1)]
    ttft = [p for p in points["workbench.actor.ttft"] if p.attributes["workbench.actor"] == "ollama-rest:good"]
    assert ttft[0].count == 1 and ttft[0].sum == pytest.approx(good.attributes["workbench.ttft_s"])
    assert points["workbench.actor.itl"][0].count == 1  # two token-bearing chunks: one gap
    assert points["workbench.actor.e2e"][0].count == 1
    tokens = {p.attributes["gen_ai.token.type"]: p.value for p in points["workbench.actor.tokens"]}
    assert tokens == {"input": 10, "output": 20}
    assert points["workbench.actor.output_tokens_per_s"][0].count == 1
    assert {p.attributes["workbench.actor"] for p in points["workbench.actor.queue_depth"]} >= {
        "ollama-rest:good", "ollama-rest:slow", "ollama-rest:broken"}
    assert all(p.value == 0 for p in points["workbench.actor.queue_depth"])
    assert points["workbench.concurrency.limit"][0].value >= 1
    assert points["workbench.concurrency.running"][0].value == 0
    assert points["workbench.actor.memory.rss"]
    assert all(p.value > 10_000_000 for p in points["workbench.actor.memory.rss"])  # a server on loopback: us


async def test_rest_requests_carry_the_message_span_as_traceparent(telemetry, server) -> None:
    spans, _ = telemetry
    actor = OllamaRESTRuntimeActor("good", host=server.url)
    try:
        await actor.chat("hi")
    finally:
        await actor.stop()
    (span,) = spans.get_finished_spans()
    (headers,) = server.headers_for("/api/chat")
    context = span.get_span_context()
    assert headers["traceparent"] == f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    assert context.trace_flags.sampled


async def test_the_ollama_library_runtime_sends_traceparent_too(telemetry, server) -> None:
    from workbench.runtimes.ollama_lib import OllamaLibRuntimeActor

    spans, _ = telemetry
    actor = OllamaLibRuntimeActor("good", host=server.url)
    try:
        assert (await actor.chat("hi")).text == "Hello"
    finally:
        await actor.stop()
    (span,) = spans.get_finished_spans()
    (headers,) = server.headers_for("/api/chat")
    assert headers["traceparent"].split("-")[1:3] == [f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"]


async def test_no_traceparent_and_no_spans_when_off(server) -> None:
    assert otel.active() is None
    actor = OllamaRESTRuntimeActor("good", host=server.url)
    try:
        await actor.chat("hi")
    finally:
        await actor.stop()
    (headers,) = server.headers_for("/api/chat")
    assert "traceparent" not in headers


def test_off_imports_no_opentelemetry() -> None:
    code = ("import sys, workbench.cli, workbench.runtimes.rest, workbench.runtimes.base, workbench.metrics.otel\n"
            "loaded = sorted(name for name in sys.modules if name.startswith('opentelemetry'))\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("env", "mode"), [
    ({}, None),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
    ({"OTEL_METRICS_EXPORTER": "none,console"}, "console"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, None),
    ({"OTEL_TRACES_EXPORTER": "none"}, None),
])
def test_mode_from_the_standard_environment_variables(env: dict[str, str], mode: str | None) -> None:
    assert otel.mode_from_environment(env) == mode


def test_an_unknown_mode_and_console_under_the_app_are_refused_by_name() -> None:
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="--otel 'jaeger': choose one of console, otlp"):
        otel.enable_from("jaeger", {})
    with pytest.raises(WorkbenchError, match="console telemetry would print over the app"):
        otel.enable_from(None, {"OTEL_TRACES_EXPORTER": "console"}, screen=True)
    assert otel.active() is None


async def test_a_client_and_workbench_serve_share_one_trace(telemetry) -> None:
    """The REST actor's span and the served actor's span (workbench serve, on loopback) are one trace:
    the server continues the caller's traceparent."""
    from tests.support.scripted import ScriptedActor
    from workbench.server.app import APIServer

    spans, _ = telemetry
    served = ScriptedActor("echo")
    served.start()
    await served.wait_ready()
    server = APIServer([served], port=0)
    await server.start()
    client = OllamaRESTRuntimeActor("echo", host=server.url)
    try:
        assert (await client.chat("one trace please")).text == "one trace please"
    finally:
        await client.stop()
        await server.close()
        await served.stop()
    by_runtime = {span.attributes["workbench.runtime"]: span for span in spans.get_finished_spans()}
    outer, inner = by_runtime["ollama-rest"], by_runtime["scripted"]
    assert inner.context.trace_id == outer.context.trace_id
    assert inner.parent.span_id == outer.context.span_id
    assert inner.parent.is_remote


async def test_a_real_model_streamed_and_cancelled(telemetry, smollm2_transformers) -> None:
    """The session's real SmolLM2 (transformers): a streamed answer and one cancelled mid-stream."""
    spans, reader = telemetry
    actor = smollm2_transformers
    otel.active().watch(actor)  # made before telemetry was on
    completion = await actor.chat("What is the capital of France?", options={"max_tokens": 6})
    reply = actor.chat("Count from one to one hundred.", options={"max_tokens": 64})
    stream = reply.__aiter__()
    while not (await stream.__anext__()).text:
        pass
    reply.cancel()  # after the first token
    with pytest.raises(MessageCancelled):
        async for _ in stream:
            pass
    done, cancelled = [s for s in spans.get_finished_spans() if s.attributes["workbench.actor"] == actor.name][-2:]
    assert done.attributes["workbench.outcome"] == "ok" and cancelled.attributes["workbench.outcome"] == "cancelled"
    assert done.attributes["gen_ai.usage.output_tokens"] == completion.metrics.output_tokens
    assert done.attributes["gen_ai.usage.input_tokens"] == completion.metrics.input_tokens > 5
    assert done.attributes["workbench.ttft_s"] == pytest.approx(completion.metrics.ttft_s)
    assert done.attributes["workbench.placement"] == actor.placement_label
    assert [event.name for event in cancelled.events] == ["started", "first_token"]
    e2e = [p for p in metric_points(reader)["workbench.actor.e2e"] if p.attributes["workbench.actor"] == actor.name]
    assert e2e[0].count == 1  # the cancelled one has no end-to-end figure


async def test_otlp_mode_exports_spans_and_metrics_over_http(monkeypatch) -> None:
    """`--otel otlp` with the standard endpoint variable: spans and metrics arrive as OTLP/HTTP
    protobuf at a loopback collector (a threaded server: the exporters post from their own threads)."""
    import http.server
    import threading

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from tests.support.scripted import ScriptedActor

    received: list[tuple[str, str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((self.path, self.headers["content-type"], body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.server_port}")
    try:
        assert otel.enable_from(None) is not None  # switched on by the variable alone
        actor = ScriptedActor("echo")
        try:
            await actor.chat("exported")
        finally:
            await actor.stop()
        await asyncio.to_thread(otel.disable)  # flushes both exporters
    finally:
        otel.disable()
        collector.shutdown()
    paths = {path for path, _, _ in received}
    assert paths == {"/v1/traces", "/v1/metrics"}
    assert all(kind == "application/x-protobuf" for _, kind, _ in received)
    traces = ExportTraceServiceRequest()
    traces.ParseFromString(next(body for path, _, body in received if path == "/v1/traces"))
    names = [span.name for resource in traces.resource_spans for scope in resource.scope_spans for span in scope.spans]
    assert names == ["chat echo"]


def test_otel_is_taken_before_or_after_the_command() -> None:
    from workbench.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["serve", "--otel", "otlp", "--actor", "x"]).otel == "otlp"
    assert parser.parse_args(["--otel", "console", "ps"]).otel == "console"
    assert parser.parse_args(["logs", "a"]).otel is None


async def test_a_password_in_the_actors_url_is_never_exported(telemetry, server) -> None:
    spans, _ = telemetry
    host = server.url.replace("http://", "http://alice:s3cret-pass-9@")
    actor = OllamaRESTRuntimeActor("good", host=host)
    try:
        assert "s3cret-pass-9" in actor.spec  # the spec holds it; telemetry must not
        assert "".join([chunk.text async for chunk in actor.chat("hi")]) == "Hello"
    finally:
        await actor.stop()
    (span,) = [span for span in spans.get_finished_spans() if span.attributes.get("gen_ai.request.model") == "good"]
    assert span.attributes["workbench.actor.spec"].startswith("ollama-rest:good@http://127.0.0.1")
    assert not any("s3cret" in str(value) for value in span.attributes.values())
