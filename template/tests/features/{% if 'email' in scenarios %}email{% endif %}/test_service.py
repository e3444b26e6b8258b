"""Users and the welcome email, below the HTTP layer: storage, composition, SMTP delivery."""

import asyncio
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select

from app.core.database import session_scope, utcnow
from app.core.migrate import upgrade_to_heads
from app.features.email import service
from app.features.email.config import EmailSettings
from app.features.email.models import User
from app.features.email.tasks import send_welcome
from app.jobs.models import Job
from app.tasks import PermanentError
from tests.features.email.conftest import SmtpServer


@pytest.fixture
def tables() -> None:
    upgrade_to_heads()


def welcome_jobs() -> list[Job]:
    with session_scope() as session:
        return list(session.scalars(select(Job).where(Job.kind == send_welcome.name)))


def a_user(name: str = "Ada Lovelace", user_id: int = 7) -> User:
    return User(id=user_id, email="ada@example.com", name=name, created_at=utcnow())


def test_the_unique_constraint_refuses_a_second_user_with_the_same_email(tables: None) -> None:
    service.create_user("ada@example.com", "Ada", send_welcome)

    # No pre-check stands in the way: the database itself refuses, so racing requests can't both win.
    with pytest.raises(service.EmailTaken):
        service.create_user("ada@example.com", "Another Ada", send_welcome)

    assert service.get_user(2) is None
    assert len(welcome_jobs()) == 1  # the refused sign-up wrote no job either


def test_a_user_and_their_welcome_job_commit_together(tables: None) -> None:
    user, job = service.create_user("ada@example.com", "Ada", send_welcome)

    stored = service.get_user(user.id)
    [row] = welcome_jobs()
    assert stored is not None
    assert stored.welcome_email_job_id == job.id == row.id
    assert (row.status, row.args) == ("queued", {"user_id": user.id})


def test_welcome_email_has_a_text_part_and_an_html_alternative() -> None:
    message = service.compose_welcome(a_user(), EmailSettings(email_from="Team <hi@corp.example>"))

    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    assert message["Subject"] == service.render("welcome_subject.txt").strip()
    assert message["From"] == "Team <hi@corp.example>"
    assert message["To"] == "ada@example.com"
    assert message["Date"]


def test_html_part_escapes_the_name_and_text_part_keeps_it() -> None:
    message = service.compose_welcome(a_user(name='Bob "<b>" & Co'), EmailSettings())

    html = message.get_body(preferencelist=("html",))
    text = message.get_body(preferencelist=("plain",))
    assert html is not None and text is not None
    assert "Bob &#34;&lt;b&gt;&#34; &amp; Co" in html.get_content()
    assert 'Bob "<b>" & Co' in text.get_content()


def test_the_subject_carries_no_text_the_caller_chose() -> None:
    # Else anyone could mail anyone a subject line of their choosing through sign-up.
    name = "Your account is locked, call +1 555 0100"
    message = service.compose_welcome(a_user(name=name), EmailSettings())

    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    assert name in text.get_content()  # the body greets them by the name they gave
    assert "locked" not in message["Subject"]
    assert "ada@example.com" not in message["Subject"]


def test_message_id_is_stable_for_a_user_so_a_resend_is_recognisable() -> None:
    settings = EmailSettings(email_from="Team <hi@corp.example>")

    first = service.compose_welcome(a_user(), settings)
    again = service.compose_welcome(a_user(), settings)
    other = service.compose_welcome(a_user(user_id=8), settings)

    assert first["Message-ID"] == again["Message-ID"]
    assert first["Message-ID"] != other["Message-ID"]
    assert first["Message-ID"].endswith("@corp.example>")


def settings_for(server: SmtpServer, **overrides: Any) -> EmailSettings:
    return EmailSettings(host="127.0.0.1", port=server.port, timeout_seconds=5, **overrides)


def a_message() -> EmailMessage:
    return service.compose_welcome(a_user(), EmailSettings())


def test_send_logs_in_when_a_username_is_set() -> None:
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(*args: object) -> AuthResult:
        credentials = args[-1]
        assert isinstance(credentials, LoginPassword)
        logins.append((credentials.login, credentials.password))
        return AuthResult(success=True)

    with SmtpServer(authenticator=authenticator, auth_require_tls=False) as server:
        settings = settings_for(server, username="mailer", password="s3cret")
        asyncio.run(service.send(a_message(), settings, template="welcome"))

    assert logins == [(b"mailer", b"s3cret")]
    assert len(server.deliveries) == 1


def test_wrong_credentials_are_a_permanent_error() -> None:
    with SmtpServer(
        authenticator=lambda *_args: AuthResult(success=False, handled=False),
        auth_require_tls=False,
    ) as server:
        settings = settings_for(server, username="mailer", password="wrong")
        with pytest.raises(PermanentError, match="535"):
            asyncio.run(service.send(a_message(), settings, template="welcome"))


def test_a_4xx_reply_is_an_ordinary_error_to_retry() -> None:
    with SmtpServer() as server:
        server.data_replies.append("452 4.3.1 Insufficient system storage")
        with pytest.raises(service.MessageDeferred) as raised:
            asyncio.run(service.send(a_message(), settings_for(server), template="welcome"))

    assert not isinstance(raised.value, PermanentError)
    assert (raised.value.code, raised.value.reply) == (452, "4.3.1 Insufficient system storage")


def test_asking_for_starttls_from_a_server_without_it_is_a_permanent_error() -> None:
    with SmtpServer() as server, pytest.raises(PermanentError, match="STARTTLS extension"):
        asyncio.run(
            service.send(a_message(), settings_for(server, starttls=True), template="welcome")
        )
