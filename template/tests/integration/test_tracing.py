"""One trace across processes: the service exports OTLP/HTTP to a receiver run by this test."""

import gzip
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.integration.conftest import Process, wait_for_final, wait_until

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    attributes: dict[str, Any]


class Receiver:
    """An OTLP/HTTP trace endpoint (`POST /v1/traces`, protobuf), as a collector serves it."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()

    def received(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {
                        a.key: getattr(a.value, a.value.WhichOneof("value") or "string_value")
                        for a in span.attributes
                    }
                    with self._lock:
                        self.spans.append(
                            ReceivedSpan(
                                service=resource["service.name"],
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_span_id=span.parent_span_id.hex(),
                                name=span.name,
                                attributes=attributes,
                            )
                        )

    def job_spans(self, job_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.attributes.get("job.id") == job_id]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            assert self.path == "/v1/traces"
            receiver.received(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield receiver, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_request_and_every_attempt_of_its_job_are_one_trace(
    receiver: tuple[Receiver, str], start_api: Callable[..., tuple[Process, str]]
) -> None:
    spans, endpoint = receiver
    api, base_url = start_api(
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_SERVICE_NAME="traced-service",
        OTEL_BSP_SCHEDULE_DELAY="50",  # milliseconds between batches (default 5 s)
    )

    response = httpx.post(f"{base_url}/samples/flaky", json={"failures": 1}, timeout=10)
    job_id = response.json()["job_id"]
    assert wait_for_final(base_url, job_id, api)["attempts"] == 2

    def both_attempts() -> list[ReceivedSpan] | None:
        found = spans.job_spans(job_id)
        return found if len(found) == 2 else None

    attempts = wait_until(both_attempts, api)  # spans leave in batches, after the job row
    [request] = [
        span
        for span in spans.spans
        if span.name == "POST /samples/{name}" and span.trace_id == attempts[0].trace_id
    ]
    assert request.service == "traced-service"
    assert request.attributes["http.response.status_code"] == 202
    assert sorted(span.attributes["job.attempt"] for span in attempts) == [1, 2]
    for attempt in attempts:
        assert attempt.trace_id == request.trace_id
        assert attempt.parent_span_id == request.span_id
        assert attempt.name == "job samples.flaky"
        assert attempt.service == "traced-service"
