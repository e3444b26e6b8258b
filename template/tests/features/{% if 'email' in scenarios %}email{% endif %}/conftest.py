"""A real SMTP server (aiosmtpd) on loopback that captures what the service sends."""

import asyncio
import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from app.features.email.config import get_email_settings

SENDER = "Test Service <welcome@service.example>"
# A scripted reply that closes the connection instead of answering.
HANG_UP = "hang up"


def free_port() -> int:
    """A port nothing listens on (aiosmtpd's `Controller(port=0)` cannot report its port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Delivery:
    """One message the server accepted: the SMTP envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    def part(self, content_type: str) -> str:
        body = self.message.get_body(preferencelist=(content_type.split("/")[1],))
        assert body is not None and body.get_content_type() == content_type
        content: str = body.get_content()
        return content.replace("\r\n", "\n")  # SMTP's line ends, as the template has them


async def hang_up(server: Any) -> str:
    """Close the connection unanswered; aiosmtpd cancels this handler once it is closed."""
    server.transport.close()
    await asyncio.sleep(60)
    raise AssertionError("the connection outlived its close")


class SmtpServer:
    """aiosmtpd in a thread. Scripted replies are given, in order, before it accepts again.

    A scripted `HANG_UP` at DATA hangs up after the message came in, before the reply: the
    message counts as delivered, as it may well be when a real server does this.
    """

    def __init__(self, **smtp_options: Any) -> None:
        self.deliveries: list[Delivery] = []
        self.data_replies: deque[str] = deque()
        self.rcpt_replies: deque[str] = deque()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **smtp_options)

    def __enter__(self) -> "SmtpServer":
        self.controller.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.controller.stop()

    async def handle_RCPT(
        self, server: Any, _session: Any, envelope: Any, address: str, _options: list[str]
    ) -> str:
        reply = self.rcpt_replies.popleft() if self.rcpt_replies else "250 OK"
        if reply == HANG_UP:
            return await hang_up(server)
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: Any, _session: Any, envelope: Any) -> str:
        reply = self.data_replies.popleft() if self.data_replies else "250 Message accepted"
        if not reply.startswith("250") and reply != HANG_UP:
            return reply
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.deliveries.append(Delivery(envelope.mail_from, list(envelope.rcpt_tos), message))
        return await hang_up(server) if reply == HANG_UP else reply


def point_smtp_at(monkeypatch: pytest.MonkeyPatch, port: int, **env: str) -> None:
    for name, value in {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_TIMEOUT_SECONDS": "5",
        "EMAIL_FROM": SENDER,
        **env,
    }.items():
        monkeypatch.setenv(name, value)
    get_email_settings.cache_clear()


@pytest.fixture(autouse=True)
def no_stray_email(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Unless a test picks a server, mail goes to a closed port, never to a real :1025 sink."""
    point_smtp_at(monkeypatch, free_port())
    yield
    get_email_settings.cache_clear()


@pytest.fixture
def smtp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    """A capturing SMTP server the service is configured to send through."""
    with SmtpServer() as server:
        point_smtp_at(monkeypatch, server.port)
        yield server


@pytest.fixture
def smtp_down(monkeypatch: pytest.MonkeyPatch) -> int:
    """The service points at a closed port: every connection is refused."""
    port = free_port()
    point_smtp_at(monkeypatch, port)
    return port


class SilentServer:
    """Accepts connections and never says a word; records how long each client waited."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port: int = self.listener.getsockname()[1]
        # (accepted, closed by the client) per connection, on the `time.perf_counter` clock.
        self.waits: list[tuple[float, float]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # the listener was closed: the test is over
                return
            with connection:
                accepted = time.perf_counter()
                while connection.recv(1024):  # b"" once the client gives up and closes
                    pass
                self.waits.append((accepted, time.perf_counter()))

    def close(self) -> None:
        # shutdown() wakes the accept() blocked in the thread; close() alone may not.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.fixture
def smtp_silent(monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentServer]:
    """A server that accepts the connection and then never says a word."""
    server = SilentServer()
    point_smtp_at(monkeypatch, server.port, SMTP_TIMEOUT_SECONDS="0.5")
    yield server
    server.close()
