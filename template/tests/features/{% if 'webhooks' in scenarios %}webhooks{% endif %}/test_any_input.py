"""An endpoint registration with one hostile part: refused with a 4xx, or registered and usable."""

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from app.core.validation import first_uncarriable
from tests.conftest import FINAL
from tests.features.webhooks.conftest import Receiver
from tests.hostile_json import HOSTILE, hostile, post_json

Wait = Callable[..., dict[str, Any]]
PLACEHOLDER = "http://receiver/hooks"  # replaced by the receiver's address in each example
ENDPOINTS = st.fixed_dictionaries(
    {
        "url": st.just(PLACEHOLDER),
        "events": st.lists(st.sampled_from(["webhook.test", "user.registered", "*"]), min_size=1),
        "description": st.sampled_from(["", "CRM", "Zoë's ledger"]),
    }
)


@HOSTILE
@given(body=hostile(ENDPOINTS), method=st.sampled_from(["POST", "PATCH"]))
def test_a_hostile_endpoint_is_refused_or_registered_and_its_test_event_settles(
    client: TestClient, receiver: Receiver, wait_for_job: Wait, body: Any, method: str
) -> None:
    if isinstance(body, dict) and isinstance(body.get("url"), str):
        body = {**body, "url": body["url"].replace("http://receiver", receiver.url[:-6])}
    url = "/webhooks/endpoints"
    if method == "PATCH":
        existing = client.post(url, json={"url": receiver.url, "events": ["webhook.test"]})
        url = existing.headers["location"]
    response = post_json(client, url, body, method=method)

    assert response.status_code < 500, response.text
    if first_uncarriable(body) is not None:
        assert response.status_code == 422, response.text
    if response.is_success:
        endpoint = response.json()
        accepted = client.post(f"/webhooks/endpoints/{endpoint['id']}/test")
        assert accepted.status_code == 202, accepted.text
        assert wait_for_job(accepted.json()["job_id"])["status"] in FINAL
        assert client.get(f"/webhooks/endpoints/{endpoint['id']}").status_code == 200
        deliveries = client.get(f"/webhooks/endpoints/{endpoint['id']}/deliveries")
        assert deliveries.status_code == 200
