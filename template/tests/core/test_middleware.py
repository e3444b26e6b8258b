"""Request ids: honoured when sane, generated otherwise, always returned, 500s included."""

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

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
