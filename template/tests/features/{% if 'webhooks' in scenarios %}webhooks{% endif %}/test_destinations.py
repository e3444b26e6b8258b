"""SSRF safety: receivers inside the network are refused, at registration and at delivery."""

import asyncio
import ipaddress
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.config import get_security_settings
from app.core.database import session_scope
from app.features.webhooks import destinations
from app.features.webhooks.config import get_webhook_settings
from app.features.webhooks.models import WebhookEndpoint
from tests.features.webhooks.conftest import Receiver, register

Wait = Callable[..., dict[str, Any]]


@pytest.fixture
def private_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOKS_ALLOW_PRIVATE_URLS", "false")
    get_webhook_settings.cache_clear()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hooks",  # loopback
        "http://10.1.2.3/hooks",  # private
        "http://192.168.0.10:8080/hooks",
        "http://169.254.169.254/latest/meta-data/",  # link-local: cloud metadata
        "http://0.0.0.0/hooks",  # unspecified
        "http://224.0.0.1/hooks",  # multicast
        "http://240.0.0.1/hooks",  # reserved
        "http://[::1]/hooks",  # IPv6 loopback
        "http://[fe80::1]/hooks",  # IPv6 link-local
        "http://[fd00::1]/hooks",  # IPv6 unique local
        "http://[::ffff:127.0.0.1]/hooks",  # IPv4-mapped IPv6
        "http://[::ffff:a9fe:a9fe]/hooks",  # 169.254.169.254, mapped and in hex
        "http://localhost:8000/hooks",  # a name resolving to 127.0.0.1
    ],
)
@pytest.mark.usefixtures("private_refused")
def test_a_receiver_inside_the_network_is_refused_with_422(client: TestClient, url: str) -> None:
    response = client.post("/webhooks/endpoints", json={"url": url, "events": ["webhook.test"]})

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "WEBHOOKS_ALLOW_PRIVATE_URLS" in detail
    assert client.get("/webhooks/endpoints").json()["items"] == []


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/hooks",  # 127.0.0.1 as one decimal number
        "http://0x7f000001/hooks",  # ... in hex
        "http://0177.0.0.1/hooks",  # ... with an octal first part
        "http://0x7f.1/hooks",
        "http://017700000001/hooks",
    ],
)
def test_an_address_in_disguise_is_refused_even_where_private_ones_are_allowed(
    client: TestClient, url: str
) -> None:
    response = client.post("/webhooks/endpoints", json={"url": url, "events": ["webhook.test"]})

    assert response.status_code == 422, response.text
    assert "number in disguise" in str(response.json()["detail"])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/hooks", "must start with https://"),
        ("https://user:pw@example.com/hooks", "user name or password"),
        ("https:///hooks", "must name a host"),
        ("https://example.com:99999/hooks", "port"),
    ],
)
def test_a_malformed_receiver_url_is_refused_with_its_reason(
    client: TestClient, url: str, message: str
) -> None:
    response = client.post("/webhooks/endpoints", json={"url": url, "events": ["webhook.test"]})

    assert response.status_code == 422, response.text
    assert message in str(response.json()["detail"])


def test_production_takes_https_receivers_only(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("API_KEYS", "k" * 32)
    monkeypatch.setenv("OPS_API_KEYS", "o" * 32)
    get_security_settings.cache_clear()
    auth = {"Authorization": f"Bearer {'k' * 32}"}

    response = client.post(
        "/webhooks/endpoints",
        json={"url": "http://127.0.0.1:9/hooks", "events": ["webhook.test"]},
        headers=auth,
    )

    assert response.status_code == 422, response.text
    assert "development only" in response.json()["detail"]


def test_public_addresses_pass_and_private_ones_say_what_they_are() -> None:
    public = ["93.184.215.14", "2606:4700::6810:84e5", "8.8.8.8"]
    assert [destinations.refusal(ipaddress.ip_address(a)) for a in public] == [None] * 3
    mapped = destinations.refusal(ipaddress.ip_address("::ffff:10.0.0.1"))
    assert mapped is not None and "10.0.0.1" in mapped and "inside the IPv6 address" in mapped
    sixtofour = destinations.refusal(ipaddress.ip_address("2002:7f00:1::"))  # 127.0.0.1 in 6to4
    assert sixtofour is not None and "loopback" in sixtofour


def test_a_name_resolving_to_a_public_address_is_pinned_to_it() -> None:
    checked = asyncio.run(
        destinations.check("https://93.184.215.14/x", allow_http=False, allow_private=False)
    )

    assert checked.address == ipaddress.ip_address("93.184.215.14")
    assert checked.host == "93.184.215.14"


def test_a_receiver_that_moved_inside_the_network_is_refused_at_delivery(
    client: TestClient,
    receiver: Receiver,
    wait_for_job: Wait,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding, or a setting turned off: each attempt checks the address again."""
    endpoint = register(client, receiver)
    monkeypatch.setenv("WEBHOOKS_ALLOW_PRIVATE_URLS", "false")
    get_webhook_settings.cache_clear()

    accepted = client.post(f"/webhooks/endpoints/{endpoint['id']}/test").json()

    job = wait_for_job(accepted["job_id"])
    assert job["status"] == "failed"
    assert job["attempts"] == 1  # refused for good, not retried
    assert "loopback" in job["error"]
    assert receiver.received == []
    with session_scope() as session:
        stored = session.get(WebhookEndpoint, uuid.UUID(endpoint["id"]))
        assert stored is not None and stored.consecutive_failures == 1


def test_an_attempt_connects_to_the_checked_address_and_names_the_host(
    client: TestClient,
    receiver: Receiver,
    wait_for_job: Wait,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No second lookup: `receiver.test` resolves nowhere but in the check (a stand-in DNS
    answer), so the delivery arrives only if it went to the address that was checked."""
    port = receiver.server.server_address[1]
    named = receiver.url.replace("127.0.0.1", "receiver.test")
    loopback = ipaddress.ip_address("127.0.0.1")

    async def stand_in_dns(host: str, _port: int) -> list[destinations.IPAddress]:
        return [loopback] if host == "receiver.test" else []

    monkeypatch.setattr(destinations, "resolve", stand_in_dns)
    monkeypatch.setattr(destinations, "refusal", lambda _address: None)  # loopback as public
    monkeypatch.setenv("WEBHOOKS_ALLOW_PRIVATE_URLS", "false")
    get_webhook_settings.cache_clear()
    created = client.post("/webhooks/endpoints", json={"url": named, "events": ["webhook.test"]})
    assert created.status_code == 201, created.text
    receiver.secret = created.json()["secret"]

    accepted = client.post(f"/webhooks/endpoints/{created.json()['id']}/test").json()

    assert wait_for_job(accepted["job_id"])["status"] == "succeeded"
    [received] = receiver.received
    assert received.verified
    assert received.headers["host"] == f"receiver.test:{port}"
