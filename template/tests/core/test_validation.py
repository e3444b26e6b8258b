"""Input every feature refuses with a 422, and a 422 answer that can show any input."""

import json
from typing import Annotated

import pytest
from fastapi import Body, FastAPI, Query
from fastapi.testclient import TestClient

from app.core.validation import StorableStr
from tests.sample_work import create_sample_app


def app_with_checked_inputs() -> FastAPI:
    app = create_sample_app()

    @app.get("/echo")
    async def echo(text: Annotated[StorableStr, Query()]) -> str:
        return text

    @app.post("/ratio")
    async def ratio(value: Annotated[float, Body(embed=True, allow_inf_nan=False)]) -> float:
        return value

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
