"""OpenTelemetry for workbench: a span per actor message and metrics by actor, off by default.

Free when off: this module imports nothing from opentelemetry; the SDK side (`metrics/otel_sdk.py`)
is imported only by `enable()`. Runtimes call `trace_headers()` for every HTTP request, which is one
`None` check while telemetry is off.

It is switched on by `workbench --otel console|otlp ...`, or by the standard environment variables
(`OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER` naming `otlp` or `console`, or an
`OTEL_EXPORTER_OTLP_ENDPOINT`); `OTEL_SDK_DISABLED=true` keeps it off. The OTLP exporter itself reads
the usual `OTEL_EXPORTER_OTLP_*` variables (endpoint, headers, protocol) and `OTEL_SERVICE_NAME`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.metrics.otel_sdk import Telemetry

Mode = Literal["console", "otlp"]
MODES: tuple[Mode, ...] = ("console", "otlp")

_active: Telemetry | None = None


def mode_from_environment(env: Mapping[str, str] | None = None) -> Mode | None:
    """The exporter the standard `OTEL_*` variables ask for, or None when they ask for none."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"):
        chosen = [part.strip().lower() for part in env.get(name, "").split(",") if part.strip()]
        for mode in MODES:
            if mode in chosen:
                return mode
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return None


def enable(mode: Mode | None = None, **kwargs: Any) -> Telemetry:
    """Switch telemetry on for this process (once; a second call returns the active one).

    `mode` picks the exporters (console or OTLP over HTTP); tests pass `span_exporter=` and
    `metric_reader=` (the SDK's in-memory ones) instead. Raises WorkbenchError naming the missing
    package when the `otel` extra is not installed.
    """
    global _active
    if _active is not None:
        return _active
    try:
        from workbench.metrics.otel_sdk import Telemetry
    except ImportError as error:
        raise WorkbenchError(
            f"OpenTelemetry is not installed ({error.name}): pip install 'workbench[otel]'"
        ) from None
    _active = Telemetry.create(mode, **kwargs)
    _active.install()
    return _active


def enable_from(mode: str | None, env: Mapping[str, str] | None = None, *, screen: bool = False) -> Telemetry | None:
    """What the command line does: `--otel MODE` if given, else the `OTEL_*` variables, else off.
    `screen`: the terminal UI will own the terminal, so console output is refused (it would be drawn
    over); OTLP is fine."""
    if mode is not None and mode not in MODES:
        raise WorkbenchError(f"--otel {mode!r}: choose one of {', '.join(MODES)}")
    chosen = mode or mode_from_environment(env)
    if chosen == "console" and screen:
        raise WorkbenchError("console telemetry would print over the app: use --otel otlp with the app, "
                             "or console with a command (run, serve, bench...)")
    return enable(chosen) if chosen else None  # type: ignore[arg-type]


def disable() -> None:
    """Flush and shut the exporters down, and stop listening to actors."""
    global _active
    telemetry, _active = _active, None
    if telemetry is not None:
        telemetry.shutdown()


def active() -> Telemetry | None:
    return _active


def watch(actor: Any) -> None:
    """Called for every runtime actor as it is made: telemetry learns its spec, runtime, placement and
    memory target (one None check while off)."""
    if _active is not None:
        _active.watch(actor)


def trace_headers() -> dict[str, str] | None:
    """W3C `traceparent` (and `tracestate`) for the message running now, for an outgoing HTTP request;
    None while telemetry is off."""
    if _active is None:
        return None
    return _active.trace_headers()


async def add_trace_headers(request: Any) -> None:
    """An httpx request hook (`event_hooks={"request": [add_trace_headers]}`) for runtimes whose HTTP
    goes through a client library: the same `traceparent` as `trace_headers()`."""
    headers = trace_headers()
    if headers:
        request.headers.update(headers)


@contextmanager
def remote_parent(headers: Mapping[str, str]) -> Iterator[None]:
    """While a server handles a request: the messages it sends to actors become children of the
    caller's span named by the request's `traceparent` (one trace across client and server). Does
    nothing while telemetry is off or the request carries no trace context."""
    if _active is None or "traceparent" not in headers:
        yield
        return
    with _active.remote_parent(headers):
        yield

