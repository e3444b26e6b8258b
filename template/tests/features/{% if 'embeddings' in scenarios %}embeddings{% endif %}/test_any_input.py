"""A document or search with one hostile part: refused with a 4xx, or processed to the end."""

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from app.core.validation import first_uncarriable
from tests.hostile_json import HOSTILE, hostile, post_json

Wait = Callable[..., dict[str, Any]]
DOCUMENTS = st.fixed_dictionaries(
    {
        "title": st.sampled_from(["Notes", "A title"]),
        "text": st.sampled_from(["Some text to embed.", "# Heading\n\nA paragraph."]),
    }
)
SEARCHES = st.fixed_dictionaries(
    {"query": st.sampled_from(["text", "a paragraph"]), "limit": st.integers(1, 50)}
)


@HOSTILE
@given(body=hostile(DOCUMENTS))
def test_a_hostile_document_is_refused_or_embedded(
    client: TestClient, wait_for_job: Wait, body: Any
) -> None:
    response = post_json(client, "/documents", body)

    assert response.status_code < 500, response.text
    if first_uncarriable(body) is not None:
        assert response.status_code == 422, response.text
    if response.is_success:
        job = wait_for_job(response.json()["job_id"])
        assert job["status"] == "succeeded", job["error"]
        document = client.get(f"/documents/{response.json()['id']}")
        assert document.json()["status"] == "ready"


@HOSTILE
@given(body=hostile(SEARCHES))
def test_a_hostile_search_is_refused_or_answered(client: TestClient, body: Any) -> None:
    response = post_json(client, "/documents/search", body)

    assert response.status_code < 500, response.text
    if first_uncarriable(body) is not None:
        assert response.status_code == 422, response.text
