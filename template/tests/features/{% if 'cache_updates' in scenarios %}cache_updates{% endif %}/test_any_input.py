"""An item write with one hostile part: refused with a 4xx, or stored, refreshed and read back."""

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from app.core.validation import first_uncarriable
from tests.hostile_json import HOSTILE, hostile, post_json

Wait = Callable[..., dict[str, Any]]
ITEMS = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["Lamp", "Desk"]),
        "price": st.sampled_from([0, 1.5, "9999999999.99"]),
    }
)


@HOSTILE
@given(body=hostile(ITEMS), method=st.sampled_from(["POST", "PUT"]))
def test_a_hostile_item_is_refused_or_stored_and_its_stats_still_read(
    client: TestClient, wait_for_job: Wait, body: Any, method: str
) -> None:
    url = "/items"
    if method == "PUT":
        existing = client.post("/items", json={"name": "Lamp", "price": 1}).json()
        url = f"/items/{existing['id']}"
    response = post_json(client, url, body, method=method)

    assert response.status_code < 500, response.text
    if first_uncarriable(body) is not None:
        assert response.status_code == 422, response.text
    if response.is_success:
        job = wait_for_job(response.json()["job_id"])
        assert job["status"] == "succeeded", job["error"]
        assert client.get(f"/items/{response.json()['id']}").status_code == 200
    assert client.get("/items/stats").status_code == 200
