"""The welcome email job end to end, through the task backend, against a real SMTP server."""

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app.core.config import get_settings
from app.features.email import service
from app.features.email.tasks import send_welcome
from app.tasks import PermanentError
from tests.features.email.conftest import (
    HANG_UP,
    SENDER,
    SilentServer,
    SmtpServer,
    point_smtp_at,
)

Wait = Callable[..., dict[str, Any]]
ADA = {"email": "ada@example.com", "name": "Ada Lovelace"}


def register(client: TestClient, **fields: str) -> dict[str, Any]:
    response = client.post("/users", json={**ADA, **fields})
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


def welcome(template: str, **context: str) -> str:
    """What one of `templates/` renders to for Ada (or `context`): edit them, not the tests."""
    return service.render(template, **{**ADA, **context}).strip()


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"template": "welcome", **labels}) or 0.0


def test_welcome_email_reaches_the_server_with_both_parts(
    client: TestClient, smtp_server: SmtpServer, wait_for_job: Wait
) -> None:
    user = register(client)
    job = wait_for_job(user["welcome_email_job_id"])

    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 1
    [delivery] = smtp_server.deliveries
    assert delivery.rcpt_tos == ["ada@example.com"]
    assert delivery.mail_from == "welcome@service.example"
    assert delivery.message["To"] == "ada@example.com"
    assert delivery.message["From"] == SENDER
    assert delivery.message["Subject"] == service.render("welcome_subject.txt").strip()
    assert delivery.message["Message-ID"] == job["result"]["message_id"]
    assert delivery.part("text/plain").strip() == welcome("welcome.txt")
    assert delivery.part("text/html").strip() == welcome("welcome.html")


def test_a_name_with_markup_arrives_escaped_in_the_html_part_only(
    client: TestClient, smtp_server: SmtpServer, wait_for_job: Wait
) -> None:
    user = register(client, name="<script>alert(1)</script>")
    wait_for_job(user["welcome_email_job_id"])

    [delivery] = smtp_server.deliveries
    html = delivery.part("text/html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    assert "Hello <script>alert(1)</script>," in delivery.part("text/plain")


def test_a_4xx_reply_is_retried_and_the_email_delivered_once(
    client: TestClient, smtp_server: SmtpServer, wait_for_job: Wait
) -> None:
    smtp_server.data_replies.append("451 4.3.0 Mail server temporarily busy")

    job = wait_for_job(register(client)["welcome_email_job_id"])

    assert job["status"] == "succeeded"
    assert job["attempts"] == 2
    assert len(smtp_server.deliveries) == 1


@pytest.mark.parametrize(
    ("stage", "reply"),
    [("rcpt", "550 5.1.1 No such mailbox here"), ("data", "554 5.7.1 Message refused as spam")],
)
def test_a_5xx_reply_fails_the_job_at_once_with_the_server_reply(
    client: TestClient, smtp_server: SmtpServer, wait_for_job: Wait, stage: str, reply: str
) -> None:
    getattr(smtp_server, f"{stage}_replies").append(reply)
    failed_before = counter("emails_failed_total", reason="permanent")

    job = wait_for_job(register(client)["welcome_email_job_id"])

    assert job["status"] == "failed"
    assert job["attempts"] == 1
    assert f"SMTP server rejected the message: {reply}" in job["error"]
    assert smtp_server.deliveries == []
    assert counter("emails_failed_total", reason="permanent") == failed_before + 1


def health_answers_until_done(
    client: TestClient, wait_for_job: Wait
) -> tuple[list[float], dict[str, Any], "httpx2.Response"]:
    """Register Ada and probe `GET /health` until her welcome email's job finished.

    Returns when each probe was answered (`time.perf_counter`), the job and the registration.
    """
    answered: list[float] = []
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.post, "/users", json=ADA)
        finished = pool.submit(
            lambda: wait_for_job(pending.result().json()["welcome_email_job_id"])
        )
        while not finished.done():
            assert client.get("/health").status_code == 200
            answered.append(time.perf_counter())
            time.sleep(0.02)
    return answered, finished.result(), pending.result()


def test_server_down_fails_after_every_attempt_while_the_api_keeps_answering(
    client: TestClient, smtp_down: int, wait_for_job: Wait, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Slower retries, so the API is probed while the job is between attempts too.
    monkeypatch.setattr(get_settings(), "job_retry_base_seconds", 0.2)
    monkeypatch.setattr(get_settings(), "job_retry_max_seconds", 0.4)
    failed_before = counter("emails_failed_total", reason="transient")

    _, job, registration = health_answers_until_done(client, wait_for_job)

    assert job["status"] == "failed"
    attempts = get_settings().job_max_attempts
    assert job["attempts"] == attempts
    assert f"port {smtp_down}" in job["error"]
    assert counter("emails_failed_total", reason="transient") == failed_before + attempts
    assert client.get(f"/users/{registration.json()['id']}").json()["welcome_email_sent_at"] is None


def test_an_operator_retry_sends_the_email_once_the_server_is_back(
    client: TestClient, smtp_down: int, wait_for_job: Wait, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "job_max_attempts", 2)
    user = register(client)
    job_id = user["welcome_email_job_id"]
    assert wait_for_job(job_id)["status"] == "failed"  # SMTP was down for every attempt

    with SmtpServer() as server:  # the server is back (the operator fixed SMTP_* settings)
        point_smtp_at(monkeypatch, server.port)
        retried = client.post(f"/jobs/{job_id}/retry")
        assert retried.status_code == 202, retried.text
        job = wait_for_job(job_id)

    assert job["status"] == "succeeded", job["error"]
    assert [delivery.rcpt_tos for delivery in server.deliveries] == [[ADA["email"]]]
    assert client.get(f"/users/{user['id']}").json()["welcome_email_sent_at"] is not None


def test_a_silent_server_times_out_without_stalling_the_api(
    client: TestClient,
    smtp_silent: SilentServer,
    wait_for_job: Wait,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(get_settings(), "job_max_attempts", 2)

    answered, job, _ = health_answers_until_done(client, wait_for_job)

    assert job["status"] == "failed"
    assert job["attempts"] == 2
    assert "Timeout" in job["error"]
    # Each attempt waited 0.5 s on the server, never on the event loop: the API answered
    # while the server held the connection. (No duration threshold: a loaded machine is slow.)
    assert len(smtp_silent.waits) == 2
    for accepted, closed in smtp_silent.waits:
        assert any(accepted < moment < closed for moment in answered), (accepted, closed)


def test_a_rerun_after_delivery_sends_nothing(
    client: TestClient, smtp_server: SmtpServer, wait_for_job: Wait
) -> None:
    user = register(client)
    wait_for_job(user["welcome_email_job_id"])

    # A redelivered or resumed job runs the unit of work again.
    result = asyncio.run(send_welcome(user_id=user["id"]))

    assert result == {"user_id": user["id"], "already_sent": True}
    assert len(smtp_server.deliveries) == 1


def test_a_connection_dropped_before_the_message_is_retried_and_delivered_once(
    client: TestClient, smtp_server: SmtpServer, wait_for_job: Wait
) -> None:
    smtp_server.rcpt_replies.append(HANG_UP)

    job = wait_for_job(register(client)["welcome_email_job_id"])

    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2
    assert len(smtp_server.deliveries) == 1


def test_a_connection_lost_after_the_message_went_out_fails_the_job_without_resending(
    client: TestClient, smtp_server: SmtpServer, wait_for_job: Wait
) -> None:
    smtp_server.data_replies.append(HANG_UP)  # the server has the message, then hangs up
    unknown_before = counter("emails_failed_total", reason="unknown")
    user = register(client)

    job = wait_for_job(user["welcome_email_job_id"])
    # A redelivered or resumed job runs the unit of work again: it must not resend either.
    with pytest.raises(service.DeliveryUnknown, match=r"is unknown.*not sent again"):
        asyncio.run(send_welcome(user_id=user["id"]))

    assert job["status"] == "failed"
    assert job["attempts"] == 1
    assert "the server may have accepted it, so it is not sent again" in job["error"]
    assert len(smtp_server.deliveries) == 1
    assert counter("emails_failed_total", reason="unknown") == unknown_before + 1


def test_a_rerun_after_a_crash_mid_send_fails_at_once_and_sends_nothing(
    client: TestClient, smtp_server: SmtpServer
) -> None:
    user, _ = service.create_user("ada@example.com", "Ada", send_welcome)
    assert service.claim_welcome_email(user.id)  # what a run that died mid-send leaves behind

    with pytest.raises(service.DeliveryUnknown) as raised:
        asyncio.run(send_welcome(user_id=user.id))

    assert isinstance(raised.value, PermanentError)  # the job fails without another attempt
    # The job's error names the user by id: job errors and log lines carry no address.
    assert f"delivery of the welcome email to user {user.id} is unknown" in str(raised.value)
    assert "it was not sent again, to avoid a duplicate" in str(raised.value)
    assert smtp_server.deliveries == []


def test_two_runs_racing_for_one_user_deliver_one_email(
    client: TestClient, smtp_server: SmtpServer
) -> None:
    user, _ = service.create_user("ada@example.com", "Ada", send_welcome)

    async def race() -> list[Any]:
        runs = (send_welcome(user_id=user.id) for _ in range(2))
        return await asyncio.gather(*runs, return_exceptions=True)

    outcomes = asyncio.run(race())

    assert len(smtp_server.deliveries) == 1
    assert sum("message_id" in outcome for outcome in outcomes if isinstance(outcome, dict)) == 1


def test_a_failed_record_after_the_server_accepted_is_retried_without_resending(
    client: TestClient,
    smtp_server: SmtpServer,
    wait_for_job: Wait,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = service.mark_welcome_email_sent
    calls: list[int] = []

    def lose_first_record(user_id: int) -> Any:
        calls.append(user_id)
        if len(calls) == 1:
            raise ConnectionError("database went away")
        return record(user_id)

    monkeypatch.setattr(service, "mark_welcome_email_sent", lose_first_record)
    user = register(client)

    job = wait_for_job(user["welcome_email_job_id"])

    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 1
    assert len(calls) == 2
    assert len(smtp_server.deliveries) == 1
    assert client.get(f"/users/{user['id']}").json()["welcome_email_sent_at"] is not None


def test_an_internationalised_domain_is_delivered_as_punycode(
    client: TestClient, smtp_server: SmtpServer, wait_for_job: Wait
) -> None:
    user = register(client, email="Bob@例え.jp")

    job = wait_for_job(user["welcome_email_job_id"])

    assert user["email"] == "bob@例え.jp"
    assert job["status"] == "succeeded", job["error"]
    [delivery] = smtp_server.deliveries  # through a server without SMTPUTF8
    assert delivery.rcpt_tos == ["bob@xn--r8jz45g.jp"]
    assert delivery.message["To"] == "bob@xn--r8jz45g.jp"
    # The body shows the address as the user typed it (normalised), not as punycode.
    assert delivery.part("text/plain").strip() == welcome(
        "welcome.txt", name="Ada Lovelace", email="bob@例え.jp"
    )


def test_a_job_for_a_missing_user_fails_permanently(client: TestClient) -> None:
    with pytest.raises(PermanentError, match="user 999 does not exist"):
        asyncio.run(send_welcome(user_id=999))


def test_sent_emails_are_counted(
    client: TestClient, smtp_server: SmtpServer, wait_for_job: Wait
) -> None:
    sent_before = counter("emails_sent_total")

    wait_for_job(register(client)["welcome_email_job_id"])

    assert counter("emails_sent_total") == sent_before + 1
    assert 'emails_sent_total{template="welcome"}' in client.get("/metrics").text


def test_job_errors_and_log_lines_name_the_user_by_id_never_by_address(
    client: TestClient,
    smtp_server: SmtpServer,
    wait_for_job: Wait,
    service_log: Callable[[], str],
) -> None:
    # Servers quote the recipient in their replies: that text reaches the job and the logs.
    smtp_server.rcpt_replies.append("550 5.1.1 <ada@example.com>: Recipient address rejected")
    user = register(client)
    job = wait_for_job(user["welcome_email_job_id"])

    # The service's own lines (the test's SMTP server logs what it received, as it should).
    logged = "\n".join(
        line for line in service_log().splitlines() if '"logger": "mail.log"' not in line
    )
    assert job["status"] == "failed"
    assert "SMTP server rejected the message" in logged  # the job's failure was logged
    assert "SMTP server rejected the message: 550 5.1.1 <<address>>" in job["error"]
    assert "ada@example.com" not in job["error"]
    assert "ada@example.com" not in json.dumps(job["result"])
    assert "ada@example.com" not in logged
