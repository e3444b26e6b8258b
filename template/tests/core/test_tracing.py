"""Tracing: one trace from a request to every attempt of its job, on the backend in use."""

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from app.core.database import get_sessionmaker
from app.core.tracing import (
    TracingMiddleware,
    configure_tracing,
    exporters_from_env,
    shutdown_tracing,
    tracing_enabled,
    tracing_requested,
)
from app.jobs.models import Job
from tests.sample_work import create_sample_app


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, every span kept in memory as soon as it ends."""
    exporter = InMemorySpanExporter()
    configure_tracing(exporter)
    yield exporter
    shutdown_tracing()


def job_spans(spans: InMemorySpanExporter, job_id: str, count: int) -> list[ReadableSpan]:
    """The job's attempt spans once `count` of them ended (the last ends after its row says so)."""
    deadline = time.monotonic() + 30
    while True:
        found = [
            span
            for span in spans.get_finished_spans()
            if span.attributes and span.attributes.get("job.id") == job_id
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return sorted(found, key=lambda span: span.start_time or 0)
        time.sleep(0.01)


def stored_trace_context(job_id: str) -> str | None:
    with get_sessionmaker()() as session:
        job = session.get(Job, uuid.UUID(job_id))
        assert job is not None
        return job.trace_context


def server_span(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    [found] = [
        span
        for span in spans.get_finished_spans()
        if span.kind == SpanKind.SERVER and span.name == name
    ]
    return found


def test_every_attempt_of_a_job_is_a_child_of_its_request(
    spans: InMemorySpanExporter, wait_for_job: Callable[..., dict[str, Any]], client: TestClient
) -> None:
    job_id = client.post("/samples/flaky", json={"failures": 2}).json()["job_id"]
    assert wait_for_job(job_id)["attempts"] == 3

    request = server_span(spans, "POST /samples/{name}")
    attempts = job_spans(spans, job_id, 3)
    assert request.context is not None
    assert [span.attributes["job.attempt"] for span in attempts if span.attributes] == [1, 2, 3]
    for span in attempts:
        assert span.context is not None and span.parent is not None
        assert span.context.trace_id == request.context.trace_id
        assert span.parent.span_id == request.context.span_id
        assert span.kind == SpanKind.CONSUMER
        assert span.name == "job samples.flaky"
    assert [span.status.status_code for span in attempts] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/samples/{name}"
    assert request.attributes["http.response.status_code"] == 202


def test_a_callers_trace_is_continued(
    spans: InMemorySpanExporter, wait_for_job: Callable[..., dict[str, Any]], client: TestClient
) -> None:
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"

    response = client.post(
        "/samples/echo", json={"value": "hi"}, headers={"traceparent": traceparent}
    )
    job_id = response.json()["job_id"]
    wait_for_job(job_id)

    [attempt] = job_spans(spans, job_id, 1)
    request = server_span(spans, "POST /samples/{name}")
    assert attempt.context is not None and request.context is not None
    assert format(attempt.context.trace_id, "032x") == trace_id
    # The job row keeps the request span's traceparent, for takeovers and retries.
    assert stored_trace_context(job_id) == f"00-{trace_id}-{request.context.span_id:016x}-01"


def test_job_log_lines_carry_the_trace(
    spans: InMemorySpanExporter,
    wait_for_job: Callable[..., dict[str, Any]],
    client: TestClient,
    service_log: Callable[[], str],
) -> None:
    job_id = client.post("/samples/echo", json={"value": "hi"}).json()["job_id"]
    wait_for_job(job_id)
    [attempt] = job_spans(spans, job_id, 1)
    assert attempt.context is not None

    lines = [json.loads(line) for line in service_log().splitlines()]
    started = [
        line for line in lines if line["message"] == "job started" and line.get("job_id") == job_id
    ]
    assert len(started) == 1
    assert started[0]["trace_id"] == format(attempt.context.trace_id, "032x")
    assert started[0]["span_id"] == format(attempt.context.span_id, "016x")
    assert started[0]["request_id"]


def test_tracing_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    assert configure_tracing() is None
    app = create_sample_app()

    assert not tracing_enabled()
    stack = {getattr(middleware.cls, "__name__", "") for middleware in app.user_middleware}
    assert "HttpMetricsMiddleware" in stack
    assert TracingMiddleware.__name__ not in stack
    with TestClient(app) as client:
        job_id = client.post("/samples/echo", json={"value": "hi"}).json()["job_id"]
        deadline = time.monotonic() + 60
        while client.get(f"/jobs/{job_id}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.01)

    assert stored_trace_context(job_id) is None


@pytest.mark.parametrize(
    ("env", "requested"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, False),
    ],
)
def test_which_variables_turn_tracing_on(env: dict[str, str], requested: bool) -> None:
    assert tracing_requested(env) is requested


def test_an_exporter_that_is_not_shipped_stops_start_up() -> None:
    with pytest.raises(SystemExit, match="OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' is not shipped"):
        exporters_from_env({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(SystemExit, match="'zipkin' is not shipped"):
        exporters_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
