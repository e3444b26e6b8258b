"""`/webhooks`: endpoints (create, read, change, rotate, delete), deliveries and their pages."""

import base64
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Keys
from tests.features.webhooks.conftest import Receiver, register

Wait = Callable[..., dict[str, Any]]
MISSING = "00000000-0000-4000-8000-000000000000"


def test_creating_an_endpoint_answers_201_with_its_secret_once(
    client: TestClient, receiver: Receiver
) -> None:
    response = client.post(
        "/webhooks/endpoints",
        json={"url": receiver.url, "events": ["user.registered", "*"], "description": "CRM"},
    )

    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"/webhooks/endpoints/{created['id']}"
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 32
    assert created["events"] == ["*", "user.registered"]
    assert created["enabled"] is True
    read = client.get(response.headers["location"])
    assert read.status_code == 200
    assert "secret" not in read.json()
    assert all("secret" not in e for e in client.get("/webhooks/endpoints").json()["items"])


def test_an_endpoint_changes_only_in_the_fields_given(
    client: TestClient, receiver: Receiver
) -> None:
    endpoint = register(client, receiver)

    response = client.patch(
        f"/webhooks/endpoints/{endpoint['id']}", json={"description": "billing"}
    )

    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["description"] == "billing"
    assert changed["url"] == endpoint["url"]
    assert changed["events"] == endpoint["events"]
    null = client.patch(f"/webhooks/endpoints/{endpoint['id']}", json={"url": None})
    assert null.status_code == 422


def test_a_disabled_endpoint_takes_no_test_until_enabled(
    client: TestClient, receiver: Receiver
) -> None:
    endpoint = register(client, receiver)
    client.patch(f"/webhooks/endpoints/{endpoint['id']}", json={"enabled": False})

    refused = client.post(f"/webhooks/endpoints/{endpoint['id']}/test")

    assert refused.status_code == 409
    assert '{"enabled": true}' in refused.json()["detail"]
    assert receiver.received == []


def test_unknown_endpoints_and_deliveries_answer_404(client: TestClient) -> None:
    for method, url in [
        ("GET", f"/webhooks/endpoints/{MISSING}"),
        ("PATCH", f"/webhooks/endpoints/{MISSING}"),
        ("DELETE", f"/webhooks/endpoints/{MISSING}"),
        ("POST", f"/webhooks/endpoints/{MISSING}/rotate-secret"),
        ("POST", f"/webhooks/endpoints/{MISSING}/test"),
        ("GET", f"/webhooks/endpoints/{MISSING}/deliveries"),
        ("GET", f"/webhooks/deliveries/{MISSING}"),
        ("POST", f"/webhooks/deliveries/{MISSING}/replay"),
    ]:
        response = client.request(method, url, json={} if method == "PATCH" else None)
        assert response.status_code == 404, (method, url, response.text)


def test_deliveries_come_newest_first_a_page_at_a_time(
    client: TestClient, receiver: Receiver, wait_for_job: Wait
) -> None:
    endpoint = register(client, receiver)
    sent = [client.post(f"/webhooks/endpoints/{endpoint['id']}/test").json() for _ in range(5)]
    for accepted in sent:
        wait_for_job(accepted["job_id"])

    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/webhooks/endpoints/{endpoint['id']}/deliveries", params=params)
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break

    assert seen == [accepted["delivery_id"] for accepted in reversed(sent)]
    bad = client.get(f"/webhooks/endpoints/{endpoint['id']}/deliveries", params={"cursor": "x"})
    assert bad.status_code == 422


def test_too_many_endpoints_answer_409(
    client: TestClient, receiver: Receiver, monkeypatch: Any
) -> None:
    from app.features.webhooks.config import get_webhook_settings

    monkeypatch.setenv("WEBHOOKS_MAX_ENDPOINTS", "1")
    get_webhook_settings.cache_clear()
    register(client, receiver)

    response = client.post("/webhooks/endpoints", json={"url": receiver.url, "events": ["a.b"]})

    assert response.status_code == 409
    assert "WEBHOOKS_MAX_ENDPOINTS" in response.json()["detail"]


def test_webhooks_need_a_client_key(client: TestClient, keys: Keys) -> None:
    assert client.get("/webhooks/endpoints").status_code == 401
    assert client.get("/webhooks/endpoints", headers=keys.auth(keys.client)).status_code == 200
