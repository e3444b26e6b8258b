"""A real HTTP receiver on loopback that checks every delivery's signature (standardwebhooks)."""

import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.features.webhooks.config import get_webhook_settings

# A scripted answer that never comes: the receiver holds the connection open, silent.
SILENT = 0


@dataclass(frozen=True)
class Received:
    """One request the receiver got, and whether its signature verified."""

    headers: dict[str, str]
    body: bytes
    verified: bool
    payload: Any


@dataclass
class Receiver:
    """Answers each POST with the next scripted (status, headers), then 200 once they run out."""

    server: ThreadingHTTPServer
    secret: str | None = None
    script: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    # When each silent answer began and when the sender gave up on it (`time.perf_counter`).
    holds: list[tuple[float, float]] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hooks"

    def answer(self, *statuses: int, **headers: str) -> None:
        self.script.extend((status, dict(headers)) for status in statuses)

    def wait_for(self, event_type: str, timeout: float = 30.0) -> Received:
        """The first verified delivery of `event_type`, waiting for it up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for received in list(self.received):
                if received.verified and received.payload["type"] == event_type:
                    return received
            time.sleep(0.01)
        raise AssertionError(f"no verified {event_type} delivery in {timeout}s: {self.received}")

    def hold(self, connection: socket.socket) -> None:
        """Say nothing until the sender closes the connection (or the test ends)."""
        held = time.perf_counter()
        connection.settimeout(0.02)
        while not self.released.is_set():
            try:
                if not connection.recv(1):  # the sender gave up waiting and closed
                    break
            except TimeoutError:
                continue
        self.holds.append((held, time.perf_counter()))

    def record(self, headers: dict[str, str], body: bytes) -> None:
        verified, payload = False, None
        if self.secret is not None:
            try:
                payload = Webhook(self.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                pass
        self.received.append(Received(headers, body, verified, payload))


def start_receiver() -> Receiver:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            receiver.record(dict(self.headers.items()), body)
            status, headers = receiver.script.popleft() if receiver.script else (200, {})
            if status == SILENT:
                receiver.hold(self.connection)
                return
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: Any) -> None:
            pass  # the test reads `received`, not stderr

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver


@pytest.fixture(autouse=True)
def webhook_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Receivers on loopback allowed (the tests' own); short timeouts. Refusal tests unset it."""
    monkeypatch.setenv("WEBHOOKS_ALLOW_PRIVATE_URLS", "true")
    monkeypatch.setenv("WEBHOOKS_CONNECT_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("WEBHOOKS_READ_TIMEOUT_SECONDS", "0.5")
    get_webhook_settings.cache_clear()
    yield
    get_webhook_settings.cache_clear()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = start_receiver()
    yield receiver
    receiver.released.set()
    receiver.server.shutdown()
    receiver.server.server_close()


def register(client: TestClient, receiver: Receiver, events: list[str] | None = None) -> Any:
    """Register `receiver` as an endpoint (for `webhook.test` unless told), and tell it the secret."""
    response = client.post(
        "/webhooks/endpoints", json={"url": receiver.url, "events": events or ["webhook.test"]}
    )
    assert response.status_code == 201, response.text
    endpoint = response.json()
    receiver.secret = endpoint["secret"]
    return endpoint
