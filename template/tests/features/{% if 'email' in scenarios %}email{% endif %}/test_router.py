"""`POST /users` and `GET /users/{id}`: status codes, headers, bodies, and what gets scheduled."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.core.database import session_scope
from app.features.email import service
from app.features.email.models import User
from app.features.email.tasks import send_welcome
from app.jobs.models import Job
from app.tasks import RUNS_IN_API_PROCESS
from tests.features.email.conftest import SmtpServer
from tests.sample_work import queue_down

Wait = Callable[..., dict[str, Any]]
ADA = {"email": "Ada@Example.com", "name": "Ada Lovelace"}


def count_jobs() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0


def count_users() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(User)) or 0


def test_registering_answers_201_with_location_and_the_welcome_job(
    client: TestClient, smtp_server: SmtpServer, wait_for_job: Wait
) -> None:
    response = client.post("/users", json=ADA)

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/users/{body['id']}"
    assert body["email"] == "ada@example.com"  # lowercased
    assert body["name"] == "Ada Lovelace"
    job = wait_for_job(body["welcome_email_job_id"])
    assert job["kind"] == "email.send_welcome"
    assert job["status"] == "succeeded"


def test_registered_user_reads_back_with_the_welcome_email_marked_sent(
    client: TestClient, smtp_server: SmtpServer, wait_for_job: Wait
) -> None:
    created = client.post("/users", json=ADA).json()
    wait_for_job(created["welcome_email_job_id"])

    response = client.get(f"/users/{created['id']}")

    assert response.status_code == 200
    user = response.json()
    assert user["id"] == created["id"]
    assert user["email"] == "ada@example.com"
    assert user["welcome_email_job_id"] == created["welcome_email_job_id"]
    sent_at = datetime.fromisoformat(user["welcome_email_sent_at"])
    assert sent_at.tzinfo is not None  # UTC on every database, SQLite included
    assert sent_at >= datetime.fromisoformat(user["created_at"])


@pytest.mark.skipif(not RUNS_IN_API_PROCESS, reason="on Celery a worker's sweep publishes it")
def test_a_user_whose_process_died_after_the_commit_still_gets_the_welcome_email(
    short_lease: float, client: TestClient, smtp_server: SmtpServer, wait_for_job: Wait
) -> None:
    # What `POST /users` commits, never handed over: the state a process killed right
    # after the commit leaves. The live app takes the job over once its lease runs out.
    user, job = service.create_user("ada@example.com", "Ada", send_welcome)

    done = wait_for_job(str(job.id))

    assert done["status"] == "succeeded", done["error"]
    [delivery] = smtp_server.deliveries
    assert delivery.rcpt_tos == ["ada@example.com"]
    assert client.get(f"/users/{user.id}").json()["welcome_email_sent_at"] is not None


def test_a_registration_the_queue_cannot_take_now_is_kept_with_its_job_queued(
    client: TestClient, smtp_server: SmtpServer
) -> None:
    with queue_down(client):  # as on Celery with the broker down: the job waits for a sweep
        response = client.post("/users", json=ADA)
    again = client.post("/users", json=ADA)

    assert response.status_code == 201, response.text  # the user and the job both exist
    job_id = response.json()["welcome_email_job_id"]
    assert client.get(f"/jobs/{job_id}").json()["status"] == "queued"
    assert client.get(response.headers["location"]).json()["welcome_email_job_id"] == job_id
    assert again.status_code == 409
    assert count_jobs() == 1


def test_unknown_user_is_404(client: TestClient) -> None:
    response = client.get("/users/12345")

    assert response.status_code == 404
    assert "not found" in response.json()["detail"]


@pytest.mark.parametrize("user_id", ["abc", "0", str(2**63)])
def test_malformed_user_id_is_422(client: TestClient, user_id: str) -> None:
    assert client.get(f"/users/{user_id}").status_code == 422


@pytest.mark.parametrize(
    "payload",
    [
        {"email": "not-an-email", "name": "Ada"},
        {"email": "ada@", "name": "Ada"},
        {"email": "ada@example.com", "name": "   "},
        {"email": "ada@example.com", "name": "Ada\r\nBcc: everyone@example.com"},
        {"email": "ada@example.com", "name": "A" * 101},
        {"email": "ada@example.com"},
    ],
    ids=["no-at", "no-domain", "blank-name", "header-injection", "long-name", "no-name"],
)
def test_invalid_input_is_422_and_schedules_nothing(
    client: TestClient, smtp_server: SmtpServer, payload: dict[str, str]
) -> None:
    response = client.post("/users", json=payload)

    assert response.status_code == 422
    assert response.json()["detail"]
    assert count_jobs() == count_users() == 0
    assert smtp_server.deliveries == []


def test_same_email_in_another_case_is_409_and_sends_no_second_email(
    client: TestClient, smtp_server: SmtpServer, wait_for_job: Wait
) -> None:
    first = client.post("/users", json=ADA).json()
    wait_for_job(first["welcome_email_job_id"])

    again = client.post("/users", json={"email": "ADA@example.COM", "name": "Someone Else"})

    assert again.status_code == 409
    assert "ada@example.com" in again.json()["detail"]
    assert count_jobs() == count_users() == 1  # the refused sign-up wrote no row, nor a job
    assert len(smtp_server.deliveries) == 1
    assert client.get(f"/users/{first['id']}").json()["name"] == "Ada Lovelace"


def test_a_non_ascii_mailbox_name_is_422_with_the_reason_and_schedules_nothing(
    client: TestClient, smtp_server: SmtpServer
) -> None:
    response = client.post("/users", json={"email": "josé@example.com", "name": "José"})

    assert response.status_code == 422
    assert "the part before the @ must be ASCII" in response.json()["detail"][0]["msg"]
    assert count_jobs() == 0
    assert smtp_server.deliveries == []


@pytest.mark.parametrize(
    "name",
    [
        "Ada\nBcc: x@example.com",
        "Ada\u2028Lovelace",
        "Ada\u2029Lovelace",
        "Ada\x85Lovelace",
        "Ada\x9bLovelace",
        "Ada\x7fLovelace",
    ],
    ids=["newline", "line-separator", "paragraph-separator", "NEL", "C1", "DEL"],
)
def test_a_name_that_is_not_one_line_is_422_and_schedules_nothing(
    client: TestClient, smtp_server: SmtpServer, name: str
) -> None:
    """The name is the welcome email's greeting line: a line break would let a sign-up write
    lines of its own into an email sent to any address it names."""
    response = client.post("/users", json={"email": "ada@example.com", "name": name})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "name"]
    assert "one line of text" in error["msg"]
    assert count_jobs() == 0


def test_a_name_with_any_other_unicode_is_welcomed_by_name(
    client: TestClient, smtp_server: SmtpServer, wait_for_job: Wait
) -> None:
    name = "Zoë 李 O'Brien-Ñúñez 🎉"
    response = client.post("/users", json={"email": "zoe@example.com", "name": name})

    assert response.status_code == 201
    assert wait_for_job(response.json()["welcome_email_job_id"])["status"] == "succeeded"
    assert f"Hello {name}," in smtp_server.deliveries[0].part("text/plain")


def test_an_internationalised_domain_and_its_punycode_are_one_account(
    client: TestClient, smtp_server: SmtpServer, wait_for_job: Wait
) -> None:
    first = client.post("/users", json={"email": "bob@例え.jp", "name": "Bob"})
    wait_for_job(first.json()["welcome_email_job_id"])

    again = client.post("/users", json={"email": "BOB@xn--r8jz45g.jp", "name": "Bob"})

    assert first.status_code == 201
    assert again.status_code == 409
    assert len(smtp_server.deliveries) == 1
