"""Request ids (honoured when sane, always returned, 500s included) and the body limit."""

import asyncio
import json
import logging
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Message

from app.core.config import get_security_settings
from tests.sample_work import create_sample_app


def test_sane_request_id_is_honoured(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "abc-123"})

    assert response.headers["X-Request-ID"] == "abc-123"


@pytest.mark.parametrize("bad", ["", "has spaces", "x" * 200, "semi;colon"])
def test_unsafe_request_id_is_replaced(client: TestClient, bad: str) -> None:
    response = client.get("/health", headers={"X-Request-ID": bad})

    returned = response.headers["X-Request-ID"]
    assert returned != bad
    assert len(returned) == 32


def test_request_id_is_generated_when_missing(client: TestClient) -> None:
    first = client.get("/health").headers["X-Request-ID"]
    second = client.get("/health").headers["X-Request-ID"]

    assert first != second


def app_with_failing_route() -> FastAPI:
    app = create_sample_app()

    @app.get("/failing")
    async def failing() -> None:
        raise RuntimeError("unhandled failure")

    return app


def logged_error(caplog: pytest.LogCaptureFixture, path: str) -> logging.LogRecord:
    [record] = [
        record
        for record in caplog.records
        if record.getMessage() == f"unhandled error answering GET {path}"
    ]
    return record


def test_an_unhandled_error_answers_500_with_the_request_id_it_is_logged_with(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with TestClient(app_with_failing_route(), raise_server_exceptions=False) as client:
        response = client.get("/failing", headers={"X-Request-ID": "failing-7"})
    logged = logged_error(caplog, "/failing")

    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert response.headers["X-Request-ID"] == "failing-7"
    assert logged.__dict__["request_id"] == "failing-7"  # put on the record by our log filter
    assert logged.levelno == logging.ERROR
    assert logged.exc_info is not None
    assert str(logged.exc_info[1]) == "unhandled failure"


def test_a_500_carries_the_generated_request_id_it_is_logged_with(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with TestClient(app_with_failing_route(), raise_server_exceptions=False) as client:
        response = client.get("/failing")

    assert response.status_code == 500
    assert len(response.headers["X-Request-ID"]) == 32
    assert (
        response.headers["X-Request-ID"] == logged_error(caplog, "/failing").__dict__["request_id"]
    )


def test_an_unhandled_error_still_reaches_the_server() -> None:
    """Starlette re-raises after answering, so servers log it and test clients see it."""
    with TestClient(app_with_failing_route()) as client, pytest.raises(RuntimeError):
        client.get("/failing")


# --- The body limit -----------------------------------------------------------------------

CHUNK = b"a" * 65_536
HUNDRED_MIB = 100 * 1024 * 1024


@dataclass
class Answer:
    status: int
    body: bytes
    bytes_read: int  # of the request body, by the app
    peak_bytes: int  # the most memory Python held at once while answering


def post_streamed(
    app: FastAPI, chunks: Iterator[bytes], headers: list[tuple[bytes, bytes]]
) -> Answer:
    """POST a body straight into the app, chunk by chunk, as a server would hand it over."""
    read = 0
    messages: list[Message] = []

    async def receive() -> Message:
        nonlocal read
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: Message) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/samples/echo",
        "raw_path": b"/samples/echo",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    tracemalloc.start()
    try:
        asyncio.run(app(scope, receive, send))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    [start] = [m for m in messages if m["type"] == "http.response.start"]
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return Answer(start["status"], body, read, peak)


def a_huge_body() -> Iterator[bytes]:
    yield b'{"value": "'
    for _ in range(HUNDRED_MIB // len(CHUNK)):
        yield CHUNK  # the same bytes each time: only the app's copies count


def test_a_chunked_body_over_the_limit_is_refused_having_read_little_of_it() -> None:
    limit = get_security_settings().max_request_bytes

    answer = post_streamed(create_sample_app(), a_huge_body(), [])

    assert answer.status == 413
    assert "MAX_REQUEST_BYTES" in json.loads(answer.body)["detail"]
    assert answer.bytes_read <= limit + len(CHUNK)  # of 100 MiB sent
    assert answer.peak_bytes < 4 * limit + 4 * len(CHUNK)


def test_a_declared_length_over_the_limit_is_refused_before_a_byte_is_read() -> None:
    declared = str(HUNDRED_MIB).encode()

    answer = post_streamed(create_sample_app(), a_huge_body(), [(b"content-length", declared)])

    assert answer.status == 413
    assert answer.bytes_read == 0


JSON = {"Content-Type": "application/json"}


def a_body_of(size: int) -> bytes:
    prefix, suffix = b'{"value": "', b'"}'
    return prefix + b"a" * (size - len(prefix) - len(suffix)) + suffix


def test_a_body_of_exactly_the_limit_is_accepted_and_one_byte_more_is_413() -> None:
    limit = get_security_settings().max_request_bytes
    with TestClient(create_sample_app()) as client:
        exact = client.post("/samples/echo", content=a_body_of(limit), headers=JSON)
        over = client.post("/samples/echo", content=a_body_of(limit + 1), headers=JSON)

    assert exact.status_code == 202
    assert over.status_code == 413
    assert over.headers["Connection"] == "close"  # the rest of the body stays unread
    assert over.headers["X-Request-ID"]


def test_the_limit_follows_max_request_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_REQUEST_BYTES", "100")
    get_security_settings.cache_clear()
    with TestClient(create_sample_app()) as client:
        accepted = client.post("/samples/echo", content=a_body_of(100), headers=JSON)
        refused = client.post("/samples/echo", content=a_body_of(101), headers=JSON)

    assert (accepted.status_code, refused.status_code) == (202, 413)
    assert "larger than 100 bytes" in refused.json()["detail"]
