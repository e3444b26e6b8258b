"""Input every feature refuses with a 422, and a bounded 422 answer that can show any input."""

import json
from typing import Annotated, Any

import pytest
from fastapi import Body, FastAPI, Query, Request
from fastapi.testclient import TestClient

from app.core.middleware import bounds_its_own_body
from app.core.validation import (
    EXCERPT_CHARS,
    MAX_ERRORS,
    MAX_JSON_DEPTH,
    StorableStr,
    first_uncarriable,
    json_safe,
)
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

    @app.post("/anything")
    async def anything(document: Annotated[dict[str, Any], Body()]) -> int:
        return len(document)

    @app.post("/own-body")
    @bounds_its_own_body
    async def own_body(request: Request) -> int:
        return len(await request.body())

    return app


def nested(depth: int) -> Any:
    """`depth` arrays inside each other, the innermost holding a number."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def post_json(client: TestClient, url: str, text: str) -> Any:
    """POST `text` as it is: json= would refuse lone surrogates, which clients can send."""
    return client.post(url, content=text, headers={"Content-Type": "application/json"})


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


def test_a_body_as_deep_as_max_json_depth_is_accepted_and_one_level_deeper_refused() -> None:
    with TestClient(app_with_checked_inputs()) as client:
        deepest = client.post("/anything", json={"a": nested(MAX_JSON_DEPTH - 1)})
        too_deep = client.post("/anything", json={"a": nested(MAX_JSON_DEPTH)})

    assert deepest.status_code == 200
    assert too_deep.status_code == 422
    [error] = too_deep.json()["detail"]
    assert error["loc"] == ["body", "a"] + [0] * (MAX_JSON_DEPTH - 1)
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in error["msg"]


def test_a_small_body_hundreds_of_levels_deep_is_refused_before_any_endpoint_sees_it() -> None:
    """About 4 KB at 600 levels: Celery's prefork pool died pickling it, on every redelivery."""
    with TestClient(app_with_checked_inputs()) as client:
        response = client.post("/anything", json={"metadata": nested(600)})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "metadata"]


def test_a_body_too_deep_for_the_json_parser_is_a_client_error_not_a_500() -> None:
    with TestClient(app_with_checked_inputs(), raise_server_exceptions=False) as client:
        response = post_json(client, "/anything", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")

    assert response.status_code == 400


@pytest.mark.parametrize(
    ("text", "location", "reason"),
    [
        ('{"a": {"b": ["ok", "x\\u0000"]}}', ["body", "a", "b", 1], "NUL character"),
        ('{"a": {"x\\u0000": 1}}', ["body", "a", "x\u0000"], "a key must not contain the NUL"),
        ('{"a": ["\\ud800"]}', ["body", "a", 0], "lone surrogate (\\ud800)"),
        ('{"a": {"\\udfff": 1}}', ["body", "a", "\\udfff"], "a key must not contain a lone"),
    ],
)
def test_text_no_database_or_encoder_can_carry_is_refused_anywhere_in_a_body(
    text: str, location: list[Any], reason: str
) -> None:
    with TestClient(app_with_checked_inputs()) as client:
        response = post_json(client, "/anything", text)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == location
    assert reason in error["msg"]


def test_an_endpoint_that_reads_its_own_body_gets_it_unread() -> None:
    """Reading it in the shared check would leave the endpoint waiting for a body forever."""
    body = json.dumps({"a": nested(3 * MAX_JSON_DEPTH)})
    with TestClient(app_with_checked_inputs()) as client:
        response = post_json(client, "/own-body", body)

    assert response.json() == len(body)


def test_a_body_that_is_not_json_is_left_to_its_endpoint() -> None:
    with TestClient(app_with_checked_inputs()) as client:
        response = client.post(
            "/anything", content=b"\x00" * 10, headers={"Content-Type": "text/plain"}
        )

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "dict_type"  # not read as JSON at all


def test_first_uncarriable_finds_the_first_problem_in_document_order() -> None:
    assert first_uncarriable({"a": ["fine", {"b": "\x00"}], "c": "\ud800"}) == (
        ("a", 1, "b"),
        "must not contain the NUL character (\\u0000)",
    )
    assert first_uncarriable({"a": ["fine", 1.5, None, True], "b": {}}) is None


def test_first_uncarriable_walks_a_value_deeper_than_python_can_recurse() -> None:
    found = first_uncarriable(nested(100_000))

    assert found is not None
    assert found[0] == (0,) * MAX_JSON_DEPTH


def test_json_safe_escapes_lone_surrogates_in_keys_and_values_so_utf8_json_can_carry_them() -> None:
    unsafe = {"\ud800key": ["a\udfffb", {"k": "\udc80"}], "n": float("nan")}

    safe = json_safe(unsafe)

    assert safe == {"\\ud800key": ["a\\udfffb", {"k": "\\udc80"}], "n": "nan"}
    json.dumps(safe, ensure_ascii=False, allow_nan=False).encode()  # raises if it cannot
