"""A message with one hostile part: refused with a 4xx, or saved by a job and read back."""

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from app.core.validation import first_uncarriable
from tests.hostile_json import HOSTILE, hostile, post_json

Wait = Callable[..., dict[str, Any]]
MESSAGES = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant"]),
        "content": st.sampled_from(["Hello", "What is 2 + 2?"]),
        "metadata": st.sampled_from([{"model": "m1", "tokens": [1, 2]}, {"tags": {"a": "b"}}]),
    }
)


@HOSTILE
@given(body=hostile(MESSAGES))
def test_a_hostile_message_is_refused_or_saved_and_read_back(
    client: TestClient, wait_for_job: Wait, body: Any
) -> None:
    response = post_json(client, "/conversations/c1/messages", body)

    assert response.status_code < 500, response.text
    if first_uncarriable(body) is not None:
        assert response.status_code == 422, response.text
    if response.is_success:
        job = wait_for_job(response.json()["job_id"])
        assert job["status"] == "succeeded", job["error"]
        read = client.get("/conversations/c1/messages", params={"limit": 500})
        assert response.json()["id"] in [message["id"] for message in read.json()["items"]]
