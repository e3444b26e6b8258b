"""Requests generated from the OpenAPI document, valid and not, at every operation: never a 5xx."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation

from app.main import create_app

Operation = APIOperation[Any, Any, Any, Any]


def operations() -> list[Operation]:
    """Every operation the service documents (a route's schema that cannot load fails here)."""
    found = []
    for result in schemathesis.openapi.from_dict(create_app().openapi()).get_all_operations():
        assert isinstance(result, Ok), result.err()
        found.append(result.ok())
    return found


def send(client: TestClient, case: Any) -> Any:
    """The generated request, encoded as Schemathesis encodes it, sent through `client`.

    JSON is written by Python's encoder as it is: lone surrogates as `\\ud800` escapes, NaN
    as `NaN`, both things a hostile client can send (`requests` would refuse to).
    """
    request = case.as_transport_kwargs(base_url="http://testserver")
    if "json" in request:
        request["data"] = json.dumps(request.pop("json")).encode()
    prepared = requests.Request(**request).prepare()
    body = prepared.body
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    assert body is None or isinstance(body, bytes)
    headers = {
        name: value if isinstance(value, str) else value.decode("latin-1")
        for name, value in prepared.headers.items()
    }
    return client.request(
        prepared.method or "GET", prepared.url or "", headers=headers, content=body
    )


@pytest.fixture
def service() -> Iterator[TestClient]:
    """The service as deployed (no test routes), answering errors as a server would."""
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client


# The service's own threads draw from `random` (retry and cache-expiry jitter) while
# Hypothesis draws the next request, which it takes for a strategy using `random`.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@pytest.mark.parametrize("operation", operations(), ids=lambda operation: operation.label)
@settings(
    # Bounded: this runs for every operation of every rendered combination.
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_generated_request_gets_a_server_error(
    service: TestClient, operation: Operation, data: st.DataObject
) -> None:
    case = data.draw(
        st.one_of(
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )
    )
    response = send(service, case)

    assert response.status_code < 500, f"{case.as_curl_command()}\n{response.text[:2000]}"
