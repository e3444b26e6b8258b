"""Deliveries to a real receiver on loopback: signed, retried, failed, and endpoints disabled."""

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.features.webhooks.config import get_webhook_settings
from tests.features.webhooks.conftest import SILENT, Receiver, register

Wait = Callable[..., dict[str, Any]]


def send_test(client: TestClient, endpoint: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/webhooks/endpoints/{endpoint['id']}/test")
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


def delivery(client: TestClient, delivery_id: str) -> dict[str, Any]:
    response = client.get(f"/webhooks/deliveries/{delivery_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def test_a_test_event_arrives_signed_as_standard_webhooks_say(
    client: TestClient, receiver: Receiver, wait_for_job: Wait
) -> None:
    endpoint = register(client, receiver)

    accepted = send_test(client, endpoint)

    assert wait_for_job(accepted["job_id"])["status"] == "succeeded"
    [received] = receiver.received
    assert received.verified
    assert received.payload["type"] == "webhook.test"
    assert received.payload["data"] == {"endpoint_id": endpoint["id"]}
    sent = delivery(client, accepted["delivery_id"])
    assert sent["status"] == "succeeded"
    assert sent["attempts"] == 1
    assert sent["response_status"] == 200
    assert sent["response_excerpt"] == "ok"
    assert sent["message_id"] == received.headers["webhook-id"]
    assert sent["delivered_at"] is not None


def test_a_503_then_200_is_two_attempts_under_one_webhook_id(
    client: TestClient, receiver: Receiver, wait_for_job: Wait
) -> None:
    endpoint = register(client, receiver)
    receiver.answer(503)

    accepted = send_test(client, endpoint)

    job = wait_for_job(accepted["job_id"])
    assert job["status"] == "succeeded"
    assert job["attempts"] == 2
    assert len(receiver.received) == 2
    assert all(r.verified for r in receiver.received)
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert delivery(client, accepted["delivery_id"])["attempts"] == 2


def test_a_410_fails_the_delivery_at_once(
    client: TestClient, receiver: Receiver, wait_for_job: Wait
) -> None:
    endpoint = register(client, receiver)
    receiver.answer(410)

    accepted = send_test(client, endpoint)

    job = wait_for_job(accepted["job_id"])
    assert job["status"] == "failed"
    assert job["attempts"] == 1
    assert len(receiver.received) == 1
    failed = delivery(client, accepted["delivery_id"])
    assert failed["status"] == "failed"
    assert failed["response_status"] == 410
    assert "410" in failed["last_error"] and "not retried" in failed["last_error"]


def test_a_redirect_is_not_followed(
    client: TestClient, receiver: Receiver, wait_for_job: Wait
) -> None:
    endpoint = register(client, receiver)
    receiver.answer(307, Location="http://169.254.169.254/latest/meta-data/")

    accepted = send_test(client, endpoint)

    assert wait_for_job(accepted["job_id"])["status"] == "failed"
    assert len(receiver.received) == 1
    assert delivery(client, accepted["delivery_id"])["response_status"] == 307


def test_a_receiver_that_never_answers_times_out_and_fails_after_every_attempt(
    client: TestClient, receiver: Receiver, wait_for_job: Wait
) -> None:
    endpoint = register(client, receiver)
    receiver.answer(SILENT, SILENT, SILENT)

    accepted = send_test(client, endpoint)
    answered = []  # when the API answered, probed while the delivery runs
    deadline = time.monotonic() + 60
    while len(receiver.holds) < 3:
        assert time.monotonic() < deadline, (
            f"3 attempts expected, the receiver saw {receiver.holds}"
        )
        assert client.get(f"/webhooks/endpoints/{endpoint['id']}").status_code == 200
        answered.append(time.perf_counter())
        time.sleep(0.02)

    job = wait_for_job(accepted["job_id"])
    assert job["status"] == "failed"
    assert job["attempts"] == 3  # JOB_MAX_ATTEMPTS' default
    assert len(receiver.received) == 3
    # Each attempt waited on the receiver, never on the event loop: the API answered while
    # the receiver held the connection. (No duration threshold: a loaded machine is slow.)
    for held, closed in receiver.holds:
        assert any(held < moment < closed for moment in answered), (held, closed)
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    failed = delivery(client, accepted["delivery_id"])
    assert failed["status"] == "failed"
    assert failed["last_error"] == "the receiver did not answer in time"


def test_retry_after_is_honoured_up_to_its_bound(
    client: TestClient, receiver: Receiver, wait_for_job: Wait, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOKS_RETRY_AFTER_MAX_SECONDS", "1")
    get_webhook_settings.cache_clear()
    endpoint = register(client, receiver)
    receiver.answer(429, Retry_After="3600")  # an hour, cut to the 1 s bound

    started = time.monotonic()
    accepted = send_test(client, endpoint)

    assert wait_for_job(accepted["job_id"])["status"] == "succeeded"
    assert time.monotonic() - started >= 1.0  # the backoff alone is 0.1 s at most here
    assert len(receiver.received) == 2


def test_an_endpoint_failing_n_deliveries_in_a_row_is_disabled_until_enabled(
    client: TestClient, receiver: Receiver, wait_for_job: Wait, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOKS_DISABLE_AFTER_FAILURES", "2")
    get_webhook_settings.cache_clear()
    endpoint = register(client, receiver)
    receiver.answer(404, 404)

    for _ in range(2):
        assert wait_for_job(send_test(client, endpoint)["job_id"])["status"] == "failed"

    disabled = client.get(f"/webhooks/endpoints/{endpoint['id']}").json()
    assert disabled["enabled"] is False
    assert "2 failed deliveries in a row" in disabled["disabled_reason"]
    assert "404" in disabled["disabled_reason"]
    assert client.post(f"/webhooks/endpoints/{endpoint['id']}/test").status_code == 409

    enabled = client.patch(f"/webhooks/endpoints/{endpoint['id']}", json={"enabled": True})
    assert enabled.status_code == 200
    assert enabled.json()["disabled_reason"] is None
    assert wait_for_job(send_test(client, endpoint)["job_id"])["status"] == "succeeded"


def test_a_replay_sends_the_same_message_under_the_same_webhook_id(
    client: TestClient, receiver: Receiver, wait_for_job: Wait
) -> None:
    endpoint = register(client, receiver)
    first = send_test(client, endpoint)
    wait_for_job(first["job_id"])

    response = client.post(f"/webhooks/deliveries/{first['delivery_id']}/replay")

    assert response.status_code == 202, response.text
    replayed = response.json()
    assert replayed["delivery_id"] != first["delivery_id"]
    assert wait_for_job(replayed["job_id"])["status"] == "succeeded"
    original, again = receiver.received
    assert again.verified
    assert again.headers["webhook-id"] == original.headers["webhook-id"]
    assert again.body == original.body


def test_a_rotated_secret_signs_the_next_delivery(
    client: TestClient, receiver: Receiver, wait_for_job: Wait
) -> None:
    endpoint = register(client, receiver)
    rotated = client.post(f"/webhooks/endpoints/{endpoint['id']}/rotate-secret").json()
    assert rotated["secret"] != endpoint["secret"]

    accepted = send_test(client, endpoint)
    wait_for_job(accepted["job_id"])

    [received] = receiver.received
    assert not received.verified  # the receiver still holds the old secret
    receiver.received.clear()
    receiver.secret = rotated["secret"]
    wait_for_job(send_test(client, endpoint)["job_id"])
    assert receiver.received[0].verified


def test_deleting_an_endpoint_stops_its_pending_deliveries(
    client: TestClient, receiver: Receiver, wait_for_job: Wait
) -> None:
    endpoint = register(client, receiver)
    receiver.answer(503, 503, 503)
    accepted = send_test(client, endpoint)

    assert client.delete(f"/webhooks/endpoints/{endpoint['id']}").status_code == 204

    assert wait_for_job(accepted["job_id"])["status"] == "failed"
    assert len(receiver.received) <= 1
