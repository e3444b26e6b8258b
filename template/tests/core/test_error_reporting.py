"""Error reporting: events reach a Sentry ingest endpoint (a local one here), without personal data."""

import gzip
import json
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sentry_sdk
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.config import get_settings
from app.core.error_reporting import (
    configure_error_reporting,
    reporting_enabled,
    stop_error_reporting,
)
from tests.sample_work import create_sample_app


class Ingest:
    """What a Sentry server received: each envelope's items, decoded."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.events: list[dict[str, Any]] = []

    def received(self, body: bytes, encoding: str) -> None:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        self.bodies.append(body)
        lines = body.split(b"\n")
        # An envelope: its header, then (item header, item payload) pairs.
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                self.events.append(json.loads(payload))

    def wait_for_events(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        sentry_sdk.flush(timeout)
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.events


@pytest.fixture
def ingest(monkeypatch: pytest.MonkeyPatch) -> Iterator[Ingest]:
    """A local Sentry ingest endpoint, and SENTRY_DSN pointing at it."""
    ingest = Ingest()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ingest.received(body, self.headers.get("Content-Encoding", ""))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SENTRY_DSN", f"http://publickey@127.0.0.1:{server.server_port}/42")
    # brotli, when installed, is the SDK's default: this server reads gzip.
    monkeypatch.setenv("SENTRY_TRANSPORT_COMPRESSION_ALGO", "gzip")
    get_settings.cache_clear()
    yield ingest
    stop_error_reporting()  # off again for the tests that follow
    server.shutdown()
    server.server_close()


def test_an_unhandled_request_error_is_reported(ingest: Ingest) -> None:
    app = create_sample_app()
    assert isinstance(app, FastAPI)

    @app.get("/boom/{n}")
    async def boom(n: int) -> None:
        raise RuntimeError(f"boom {n}")

    key = secrets.token_urlsafe(24)  # made here: the events carry this file's source lines
    with TestClient(app, raise_server_exceptions=False) as client:
        assert reporting_enabled()
        response = client.get("/boom/7", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 500

    [event] = ingest.wait_for_events(1)
    [exception] = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert exception["value"] == "boom 7"
    assert event["tags"]["http.route"] == "/boom/{n}"
    assert event["tags"]["request_id"] == response.headers["X-Request-ID"]
    assert key.encode() not in b"".join(ingest.bodies)
    assert "request" not in event  # no headers, cookies, body or client address


def test_a_job_that_fails_for_good_is_reported_with_its_id_and_kind(
    ingest: Ingest, client: TestClient, wait_for_job: Callable[..., dict[str, Any]]
) -> None:
    assert reporting_enabled()
    secret = f"{secrets.token_hex(8)}@example.com"
    job_id = client.post("/samples/refuse", json={"secret": secret}).json()["job_id"]
    assert wait_for_job(job_id)["status"] == "failed"

    [event] = ingest.wait_for_events(1)
    assert event["tags"]["job.kind"] == "samples.refuse"
    assert event["tags"]["job.id"] == job_id
    [exception] = event["exception"]["values"]
    assert exception["type"] == "PermanentError"
    # Frames carry no local variables, so the job's arguments stay here.
    assert secret.encode() not in b"".join(ingest.bodies)
    assert all("vars" not in frame for frame in exception["stacktrace"]["frames"])


def test_retried_attempts_are_not_reported(
    ingest: Ingest, client: TestClient, wait_for_job: Callable[..., dict[str, Any]]
) -> None:
    job_id = client.post("/samples/flaky", json={"failures": 2}).json()["job_id"]
    assert wait_for_job(job_id)["status"] == "succeeded"

    assert ingest.wait_for_events(1, timeout=0.5) == []


def test_nothing_is_reported_without_a_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    get_settings.cache_clear()

    assert configure_error_reporting() is False
    assert not reporting_enabled()
