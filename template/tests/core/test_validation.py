"""Input every feature refuses with a 422, and a bounded 422 answer that can show any input."""

import json
from typing import Annotated

import pytest
from fastapi import Body, FastAPI, Query
from fastapi.testclient import TestClient

from app.core.validation import EXCERPT_CHARS, MAX_ERRORS, StorableStr
from tests.sample_work import create_sample_app


def app_with_checked_inputs() -> FastAPI:
    app = create_sample_app()

    @app.get("/echo")
    async def echo(text: Annotated[StorableStr, Query()]) -> str:
        return text

    @app.post("/ratio")
    async def ratio(value: Annotated[float, Body(embed=True, allow_inf_nan=False)]) -> float:
        return value

    @app.post("/numbers")
    async def numbers(values: Annotated[list[int], Body(embed=True)]) -> int:
        return len(values)

    return app


def test_text_with_nul_is_refused_with_422_saying_why() -> None:
    with TestClient(app_with_checked_inputs()) as client:
        refused = client.get("/echo", params={"text": "a\x00b"})
        accepted = client.get("/echo", params={"text": "ab"})

    assert refused.status_code == 422
    assert "NUL character" in refused.json()["detail"][0]["msg"]
    assert accepted.json() == "ab"


def refuse_non_json_numbers(constant: str) -> None:
    raise AssertionError(f"the answer is not strict JSON: it holds {constant}")


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_input_json_cannot_carry_is_refused_with_a_422_that_is_json(number: str) -> None:
    """Python's JSON parser reads these, and FastAPI's own 422 echoing them was a 500."""
    with TestClient(app_with_checked_inputs()) as client:
        response = client.post(
            "/ratio",
            content='{"value": ' + number + "}",  # not an f-string: doubled braces read as Jinja
            headers={"Content-Type": "application/json"},
        )

    assert response.status_code == 422
    [error] = json.loads(response.text, parse_constant=refuse_non_json_numbers)["detail"]
    assert error["loc"] == ["body", "value"]
    assert error["input"] in ("nan", "inf", "-inf")


def test_a_422_shows_an_excerpt_of_a_large_input_not_the_input() -> None:
    huge = "z" * 900_000  # under MAX_REQUEST_BYTES, as JSON
    with TestClient(app_with_checked_inputs()) as client:
        response = client.post("/ratio", json={"value": huge})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["input"] == "z" * EXCERPT_CHARS + "…"
    assert len(response.content) < 2_000


def test_a_422_shows_a_large_object_as_the_start_of_its_json() -> None:
    with TestClient(app_with_checked_inputs()) as client:
        response = client.post("/ratio", json={"value": {"nested": ["y" * 50_000]}})

    [error] = response.json()["detail"]
    assert error["input"].startswith('{"nested": ["yyy')
    assert len(error["input"]) == EXCERPT_CHARS + 1


def test_a_422_lists_the_first_errors_and_how_many_there_were() -> None:
    with TestClient(app_with_checked_inputs()) as client:
        response = client.post("/numbers", json={"values": ["not a number"] * 10_000})

    body = response.json()
    assert response.status_code == 422
    assert len(body["detail"]) == MAX_ERRORS
    assert body["error_count"] == 10_000
    assert len(response.content) < 20_000


def test_a_small_input_is_shown_whole() -> None:
    with TestClient(app_with_checked_inputs()) as client:
        response = client.post("/ratio", json={"value": {"a": 1}})

    assert response.json()["detail"][0]["input"] == {"a": 1}
