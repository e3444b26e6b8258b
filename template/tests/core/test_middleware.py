"""Request ids: honoured when sane, generated otherwise, always returned."""

import pytest
from fastapi.testclient import TestClient


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
