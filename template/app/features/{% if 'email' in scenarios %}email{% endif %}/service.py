"""Users (create, read) and the welcome email: composed from Jinja2 templates, sent over SMTP."""

import hashlib
import uuid
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from app.core.database import get_sessionmaker, session_scope, utcnow
from app.features.email.config import EmailSettings
from app.features.email.metrics import EMAILS_FAILED, EMAILS_SENT
from app.features.email.models import User
from app.tasks import PermanentError

# Autoescape in .html templates only: a name like "<script>" must reach the HTML part as
# text, while the plain-text part and the subject keep it verbatim.
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


class EmailTaken(Exception):
    """Another user already registered this (lowercased) email address."""


class MessageDeferred(Exception):
    """The SMTP server refused the message for now (4xx reply): the job is retried."""

    def __init__(self, code: int, reply: str) -> None:
        super().__init__(f"SMTP server deferred the message: {code} {reply}")
        self.code, self.reply = code, reply


class MessageRejected(PermanentError):
    """The SMTP server refused the message for good (5xx reply): retrying cannot help."""

    def __init__(self, code: int, reply: str) -> None:
        super().__init__(f"SMTP server rejected the message: {code} {reply}")
        self.code, self.reply = code, reply


def create_user(email: str, name: str) -> User:
    """Insert a user; raises `EmailTaken` when the unique constraint on email refuses it."""
    try:
        with session_scope() as session:
            user = User(email=email, name=name, created_at=utcnow())
            session.add(user)
            session.flush()
    except IntegrityError:
        raise EmailTaken(email) from None
    return user


def delete_user(user_id: int) -> None:
    """Undo a registration (its welcome email could not be scheduled)."""
    with session_scope() as session:
        session.execute(delete(User).where(User.id == user_id))


def get_user(user_id: int) -> User | None:
    with get_sessionmaker()() as session:
        return session.get(User, user_id)


def set_welcome_email_job(user_id: int, job_id: uuid.UUID) -> None:
    with session_scope() as session:
        session.execute(update(User).where(User.id == user_id).values(welcome_email_job_id=job_id))


def mark_welcome_email_sent(user_id: int) -> datetime:
    """Record that the SMTP server accepted the welcome email (kept if already recorded)."""
    sent_at = utcnow()
    with session_scope() as session:
        session.execute(
            update(User)
            .where(User.id == user_id, User.welcome_email_sent_at.is_(None))
            .values(welcome_email_sent_at=sent_at)
        )
    return sent_at


def render(template: str, **context: Any) -> str:
    return _templates.get_template(template).render(**context)


def compose_welcome(user: User, settings: EmailSettings) -> EmailMessage:
    """The welcome email: a plain-text part and an HTML alternative, from `templates/`."""
    context = {"name": user.name, "email": user.email}
    message = EmailMessage()
    message["Subject"] = render("welcome_subject.txt", **context).strip()
    message["From"] = settings.email_from
    message["To"] = user.email
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = welcome_message_id(user, settings)
    message.set_content(render("welcome.txt", **context))
    message.add_alternative(render("welcome.html", **context), subtype="html")
    return message


def welcome_message_id(user: User, settings: EmailSettings) -> str:
    """The same Message-ID every time for one user, so a resent duplicate can be recognised."""
    digest = hashlib.blake2b(user.email.encode(), digest_size=6).hexdigest()
    domain = parseaddr(settings.email_from)[1].rpartition("@")[2] or "localhost"
    return f"<welcome.{user.id}.{digest}@{domain}>"


async def send(message: EmailMessage, settings: EmailSettings, *, template: str) -> None:
    """Hand `message` to the SMTP server.

    Failures that can pass are ordinary exceptions, so the job is retried: 4xx replies
    (`MessageDeferred`), and connections refused, timed out or dropped (aiosmtplib's own
    errors). A 5xx reply raises `MessageRejected` and a server lacking a feature the
    settings ask for raises `PermanentError`: the job fails at once.
    """
    try:
        await aiosmtplib.send(
            message,
            sender=parseaddr(settings.email_from)[1],
            recipients=[message["To"]],
            hostname=settings.host,
            port=settings.port,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            use_tls=settings.use_tls,
            start_tls=settings.starttls,
            timeout=settings.timeout_seconds,
        )
    except Exception as exc:
        error = _classify(exc)
        permanent = isinstance(error, PermanentError)
        EMAILS_FAILED.labels(template, "permanent" if permanent else "transient").inc()
        if error is exc:
            raise
        raise error from exc
    EMAILS_SENT.labels(template).inc()


def _classify(exc: Exception) -> Exception:
    """The exception the job should see for an SMTP failure: permanent or retried."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]  # one recipient per welcome email
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if exc.code >= 500:
            return MessageRejected(exc.code, exc.message)
        return MessageDeferred(exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPException) and not isinstance(
        exc, ConnectionError | TimeoutError
    ):
        # The server lacks what the settings or the message need (STARTTLS, AUTH,
        # SMTPUTF8): a configuration problem that the next attempt would hit again.
        return PermanentError(f"SMTP server cannot do what is asked: {exc.message}")
    return exc  # refused, timed out, disconnected, network errors: worth another try
