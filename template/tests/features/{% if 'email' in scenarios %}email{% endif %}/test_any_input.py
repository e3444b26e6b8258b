"""A sign-up with one hostile part: refused with a 4xx, or welcomed by a job that succeeds."""

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from app.core.validation import first_uncarriable
from tests.features.email.conftest import SmtpServer
from tests.hostile_json import HOSTILE, hostile, post_json

Wait = Callable[..., dict[str, Any]]
SIGN_UPS = st.fixed_dictionaries(
    {
        "email": st.uuids().map(lambda id_: f"u{id_.hex[:16]}@example.com"),
        "name": st.sampled_from(["Ada", "Grace Hopper", "Zoë"]),
    }
)


@HOSTILE
@given(body=hostile(SIGN_UPS))
def test_a_hostile_sign_up_is_refused_or_its_welcome_email_is_sent(
    client: TestClient, smtp_server: SmtpServer, wait_for_job: Wait, body: Any
) -> None:
    response = post_json(client, "/users", body)

    assert response.status_code < 500, response.text
    if first_uncarriable(body) is not None:
        assert response.status_code == 422, response.text
    if response.is_success:
        job = wait_for_job(response.json()["welcome_email_job_id"])
        assert job["status"] == "succeeded", job["error"]
        assert client.get(response.headers["location"]).status_code == 200
