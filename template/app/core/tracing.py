"""OpenTelemetry tracing: on when the standard OTEL_* variables ask for it, off and free otherwise."""

from __future__ import annotations  # the SDK's types, imported for type checking only

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.metrics import route_template

# The SDK is imported when tracing starts: a service that does not trace does not pay the
# half second its import takes at start-up (the API above is a fraction of that).
if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

# Both the API and the worker report under this name unless OTEL_SERVICE_NAME says otherwise.
DEFAULT_SERVICE_NAME = "app"
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None


def tracing_requested(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for spans: an exporter, or somewhere to send them.

    Off by default, unlike the SDK's own auto-configuration (which exports OTLP to
    localhost unasked): a service that nobody told where to send spans sends none.
    """
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER")
    if exporters is not None:
        return exporters.strip().lower() not in ("", "none")
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def exporters_from_env(env: Mapping[str, str] = os.environ) -> list[SpanExporter]:
    """The exporters OTEL_TRACES_EXPORTER names (default `otlp`, over HTTP: port 4318)."""
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    protocol = env.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    )
    found: list[SpanExporter] = []
    for name in env.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(","):
        name = name.strip()
        if name == "console":
            found.append(ConsoleSpanExporter())
        elif name == "otlp":
            if protocol != "http/protobuf":
                raise SystemExit(
                    f"invalid configuration: OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not "
                    "shipped; this service exports OTLP over HTTP: set it to http/protobuf and "
                    "point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port (4318)"
                )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            found.append(OTLPSpanExporter())  # reads OTEL_EXPORTER_OTLP_* itself
        elif name not in ("", "none"):
            raise SystemExit(
                f"invalid configuration: OTEL_TRACES_EXPORTER: {name!r} is not shipped; "
                "use otlp, console or none"
            )
    return found


def configure_tracing(exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Start tracing in this process when the environment asks for it (or with `exporter`).

    Idempotent: the API's app factory and the worker call it at start-up. A given `exporter`
    (tests) replaces the process's earlier configuration.
    """
    global _provider, _tracer
    if _provider is not None and exporter is None:
        return _provider
    if exporter is None and not tracing_requested():
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    shutdown_tracing()
    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: DEFAULT_SERVICE_NAME}
    # The sampler comes from OTEL_TRACES_SAMPLER (default: follow the parent, else sample).
    provider = TracerProvider(resource=Resource.create(named), shutdown_on_exit=True)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    for configured in exporters_from_env() if exporter is None else []:
        # Batches leave from a thread of their own (OTEL_BSP_* variables), off the request.
        provider.add_span_processor(BatchSpanProcessor(configured))
    # Not the global provider: FastAPI's native telemetry (0.165+) traces with that one, and
    # would wrap each request in spans of its own around ours. One request span, here.
    _provider, _tracer = provider, provider.get_tracer("app")
    return provider


def tracing_enabled() -> bool:
    return _tracer is not None


def flush_tracing() -> None:
    """Send the spans still waiting in batches (before a process ends)."""
    if _provider is not None:
        _provider.force_flush()


def shutdown_tracing() -> None:
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    _provider = _tracer = None


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, stored with a job so its run joins the trace."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def job_span(
    kind: str, job_id: str, traceparent: str | None
) -> AbstractContextManager[Span | None]:
    """A span for one attempt of a job, a child of the request that enqueued it.

    The parent comes from the job's stored `traceparent` only, never from whatever span is
    current, so an attempt joins the same trace in the API process, after a retry's delay,
    in a Celery worker, or when another process takes the job over.
    """
    if _tracer is None:
        return nullcontext()  # tracing off: no generator to drive for each attempt
    return _job_span(_tracer, kind, job_id, traceparent)


@contextmanager
def _job_span(
    tracer: trace.Tracer, kind: str, job_id: str, traceparent: str | None
) -> Iterator[Span]:
    parent = propagate.extract({"traceparent": traceparent} if traceparent else {})
    with tracer.start_as_current_span(
        f"job {kind}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={"job.id": job_id, "job.kind": kind},
    ) as span:
        yield span


def annotate_attempt(attempt: int) -> None:
    """Number the attempt on the current job span (a no-op while tracing is off)."""
    trace.get_current_span().set_attribute("job.attempt", attempt)


def mark_failed(span: Span | None, error: str) -> None:
    """A failed attempt's span is an error, with the attempt's error as its description."""
    if span is not None:
        span.set_status(Status(StatusCode.ERROR, error))


class TracingMiddleware:
    """A server span per request, continuing the caller's trace (`traceparent`) if it sent one.

    Pure ASGI, like the other middleware here; it adds nothing to a request while tracing is
    off. The span is named after the route template once routing has chosen the route.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = _tracer
        if tracer is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in (b"traceparent", b"tracestate")
        }
        method = scope["method"]
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with tracer.start_as_current_span(
            method,
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.scheme": scope.get("scheme", "http")},
        ) as span:
            try:
                await self.app(scope, receive, send_with_status)
            finally:
                route = route_template(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
