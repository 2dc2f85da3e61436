"""Telemetry: OpenTelemetry traces, Prometheus metrics and JSON logs.

Traces: every service has a tracer provider, so trace ids exist and travel in events
(the envelope's trace context) and NATS headers even when nothing is exported. Export
is off by default; the standard variables turn it on (``OTEL_TRACES_EXPORTER=otlp`` with
``OTEL_EXPORTER_OTLP_ENDPOINT``, or ``console``), and ``BATON_TRACE_FILE`` writes
finished spans as JSON lines (for tests and debugging).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from contracts.envelope import TraceContext

_propagator = TraceContextTextMapPropagator()
_state = {"service": "baton"}
log_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("baton_tenant", default=None)
log_customer: contextvars.ContextVar[str | None] = contextvars.ContextVar("baton_customer", default=None)


# --- traces -----------------------------------------------------------------------------


class FileSpanExporter(SpanExporter):
    """Appends finished spans to a file as JSON lines (one object per span)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            if ctx is None:
                continue
            lines.append(
                json.dumps(
                    {
                        "service": span.resource.attributes.get("service.name"),
                        "name": span.name,
                        "kind": span.kind.name,
                        "trace_id": f"{ctx.trace_id:032x}",
                        "span_id": f"{ctx.span_id:016x}",
                        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else None,
                        "start": span.start_time,
                        "end": span.end_time,
                        "attributes": {k: v for k, v in (span.attributes or {}).items()},
                    }
                )
            )
        with self._lock, self._path.open("a", encoding="utf-8") as out:
            out.write("".join(f"{line}\n" for line in lines))
        return SpanExportResult.SUCCESS


def setup_tracing(service: str, trace_file: str = "") -> TracerProvider:
    """Install the service's tracer provider and the exporters the environment asks for."""
    _state["service"] = service
    provider = TracerProvider(resource=Resource.create({"service.name": f"baton-{service}"}))
    if trace_file:
        provider.add_span_processor(
            SimpleSpanProcessor(FileSpanExporter(Path(trace_file.replace("{service}", service))))
        )
    exporters = {e.strip() for e in os.environ.get("OTEL_TRACES_EXPORTER", "none").split(",")}
    if "otlp" in exporters:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if "console" in exporters:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def tracer() -> trace.Tracer:
    """Baton's tracer."""
    return trace.get_tracer("baton")


def current_trace_context() -> TraceContext:
    """The active span's W3C trace context (empty when no span is active)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return TraceContext(traceparent=carrier.get("traceparent"), tracestate=carrier.get("tracestate"))


def context_from(trace_context: TraceContext | None) -> otel_context.Context:
    """The OpenTelemetry context of a recorded trace context (a new root when empty)."""
    carrier = {}
    if trace_context is not None and trace_context.traceparent:
        carrier["traceparent"] = trace_context.traceparent
        if trace_context.tracestate:
            carrier["tracestate"] = trace_context.tracestate
    return _propagator.extract(carrier)


@contextmanager
def span(
    name: str, kind: SpanKind, parent: TraceContext | dict[str, str] | None = None, **attributes: Any
) -> Iterator[Span]:
    """A span, child of ``parent`` (a trace context or HTTP headers) or of the current span."""
    if isinstance(parent, dict):
        ctx: otel_context.Context | None = _propagator.extract(parent)
    elif parent is not None:
        ctx = context_from(parent)
    else:
        ctx = None
    clean = {k: v for k, v in attributes.items() if v is not None}
    with tracer().start_as_current_span(name, context=ctx, kind=kind, attributes=clean) as current:
        yield current


# --- logs -------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the trace id, tenant and customer when known."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": _state["service"],
            "logger": record.name,
            "message": record.getMessage(),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            entry["trace_id"] = f"{ctx.trace_id:032x}"
            entry["span_id"] = f"{ctx.span_id:016x}"
        if (tenant := log_tenant.get()) is not None:
            entry["tenant"] = tenant
        if (customer := log_customer.get()) is not None:
            entry["customer"] = customer
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str) -> None:
    """JSON lines on stderr for every logger (uvicorn's included)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


# --- metrics ----------------------------------------------------------------------------

Family = GaugeMetricFamily | CounterMetricFamily
"""A metric family computed at scrape time."""


class _Snapshot(Collector):
    """Serves metric families computed just before a scrape."""

    def __init__(self) -> None:
        self.families: list[GaugeMetricFamily | CounterMetricFamily] = []

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield from self.families


class Metrics:
    """A service's Prometheus metrics (its own registry)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.commands = Counter(
            "baton_commands", "Commands handled, by outcome.", ["service", "command", "outcome"], registry=self.registry
        )
        self.events_appended = Counter(
            "baton_events_appended", "Events this service appended to the store.", ["service"], registry=self.registry
        )
        self.handoff_acceptance = Histogram(
            "baton_handoff_acceptance_seconds",
            "Time from a hand-off request to its acceptance.",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600),
            registry=self.registry,
        )
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)

    def exposition(self, families: list[GaugeMetricFamily | CounterMetricFamily]) -> bytes:
        """The Prometheus text exposition, with ``families`` computed for this scrape."""
        self._snapshot.families = families
        return generate_latest(self.registry)


def gauge(name: str, documentation: str, labels: dict[str, str], value: float) -> GaugeMetricFamily:
    """One gauge sample as a metric family."""
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def counter(
    name: str, documentation: str, samples: dict[tuple[str, ...], float], label_names: list[str]
) -> CounterMetricFamily:
    """A counter family from current totals (kept by the code that counts)."""
    family = CounterMetricFamily(name, documentation, labels=label_names)
    for label_values, value in samples.items():
        family.add_metric(list(label_values), value)
    return family
