"""Users (create, read) and the welcome email: composed from Jinja2 templates, sent over SMTP."""

import hashlib
import re
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any, cast

import aiosmtplib
from email_validator import validate_email
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import CursorResult, update
from sqlalchemy.exc import IntegrityError

from app.core.database import get_sessionmaker, session_scope, utcnow
from app.core.events import announce
from app.features.email.config import EmailSettings
from app.features.email.metrics import EMAILS_FAILED, EMAILS_SENT
from app.features.email.models import User
from app.jobs.service import QueuedJob
from app.tasks import PermanentError, Task, stage

# Autoescape in .html templates only: a name like "<script>" must reach the HTML part as
# text, while the plain-text part keeps it verbatim.
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


class DeliveryUnknown(PermanentError):
    """The message may have reached the server: sending it again could deliver it twice."""


def create_user(email: str, name: str, welcome: Task) -> tuple[User, QueuedJob]:
    """Insert a user and the job of their welcome email (`welcome`), in one transaction.

    Both commit or neither does: a crash cannot leave a user without a welcome job. Raises
    `EmailTaken`, writing nothing, when the unique constraint on email refuses the user.
    """
    try:
        with session_scope() as session:
            user = User(email=email, name=name, created_at=utcnow())
            session.add(user)
            session.flush()  # the id the job takes; a duplicate email fails here
            job = stage(session, welcome, user_id=user.id)
            user.welcome_email_job_id = job.id
            announce(session, "user.registered", registered(user))
    except IntegrityError:
        raise EmailTaken(email) from None
    return user, job


def registered(user: User) -> dict[str, Any]:
    """The `user.registered` event's payload (documented in this scenario's README)."""
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "created_at": user.created_at.isoformat(),
    }


def get_user(user_id: int) -> User | None:
    with get_sessionmaker()() as session:
        return session.get(User, user_id)


def claim_welcome_email(user_id: int) -> bool:
    """Mark the welcome email as being sent; False if it is already claimed or sent.

    One conditional UPDATE, so of two runs racing for the same user only one may send.
    """
    with session_scope() as session:
        # An UPDATE's result is a CursorResult (it has a rowcount); `execute` says Result.
        claimed = cast(
            CursorResult[Any],
            session.execute(
                update(User)
                .where(
                    User.id == user_id,
                    User.welcome_email_sending_at.is_(None),
                    User.welcome_email_sent_at.is_(None),
                )
                .values(welcome_email_sending_at=utcnow())
            ),
        )
        return claimed.rowcount == 1


def release_welcome_email(user_id: int) -> None:
    """Drop the claim after a failure that proves the server did not take the email."""
    with session_scope() as session:
        session.execute(
            update(User)
            .where(User.id == user_id, User.welcome_email_sent_at.is_(None))
            .values(welcome_email_sending_at=None)
        )


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


def mail_address(email: str) -> str:
    """The address as SMTP carries it without extensions: an internationalised domain as punycode.

    `bob@例え.jp` goes out as `bob@xn--r8jz45g.jp`, which every server accepts. A non-ASCII
    part before the @ has no such form (registration refuses it); it is sent as it is, so
    only a server offering SMTPUTF8 takes it.
    """
    return validate_email(email, check_deliverability=False).ascii_email or email


def compose_welcome(user: User, settings: EmailSettings) -> EmailMessage:
    """The welcome email: a plain-text part and an HTML alternative, from `templates/`.

    The caller chose the name and the address, so they appear in the body only (escaped in
    the HTML part): the subject, which a mail client shows before anything else, is
    rendered without them, so sign-ups cannot send anyone a subject line of their choosing.
    """
    context = {"name": user.name, "email": user.email}
    message = EmailMessage()
    message["Subject"] = render("welcome_subject.txt").strip()
    message["From"] = settings.email_from
    message["To"] = mail_address(user.email)
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = welcome_message_id(user, settings)
    message.set_content(render("welcome.txt", **context))
    message.add_alternative(render("welcome.html", **context), subtype="html")
    return message


def welcome_message_id(user: User, settings: EmailSettings) -> str:
    """The same Message-ID every time for one user: one welcome email, one identity."""
    digest = hashlib.blake2b(user.email.encode(), digest_size=6).hexdigest()
    domain = parseaddr(settings.email_from)[1].rpartition("@")[2] or "localhost"
    return f"<welcome.{user.id}.{digest}@{domain}>"


class _SMTP(aiosmtplib.SMTP):
    """aiosmtplib's client, noting when the message itself starts out (after MAIL and RCPT)."""

    message_started = False

    async def data(self, message: str | bytes, /, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        self.message_started = True
        return await super().data(message, **kwargs)


async def send(message: EmailMessage, settings: EmailSettings, *, template: str) -> None:
    """Hand `message` to the SMTP server.

    Any failure but `DeliveryUnknown` proves the server did not take the message. Those
    that can pass are ordinary exceptions, so the job is retried: 4xx replies
    (`MessageDeferred`), and connections refused, timed out or dropped before the message
    was sent. A 5xx reply raises `MessageRejected` and a server lacking a feature the
    settings ask for raises `PermanentError`: the job fails at once. A connection lost
    while the message was on its way, before the server's reply, raises `DeliveryUnknown`:
    SMTP cannot tell whether it arrived.
    """
    client = _SMTP(
        hostname=settings.host,
        port=settings.port,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        use_tls=settings.use_tls,
        start_tls=settings.starttls,
        timeout=settings.timeout_seconds,
    )
    try:
        async with client:
            await client.send_message(
                message, sender=parseaddr(settings.email_from)[1], recipients=[message["To"]]
            )
    except Exception as exc:  # a failed QUIT after the 250 is not one: aiosmtplib ignores it
        error = _classify(exc, message_started=client.message_started)
        if isinstance(error, DeliveryUnknown):
            reason = "unknown"
        else:
            reason = "permanent" if isinstance(error, PermanentError) else "transient"
        EMAILS_FAILED.labels(template, reason).inc()
        if error is exc:
            raise
        # Not chained: aiosmtplib's own exception names the recipient, and the job's log
        # line would print it in the traceback. The reply and its code are in `error`.
        raise error from None
    EMAILS_SENT.labels(template).inc()


# An email address as SMTP replies quote it ("<bob@example.com>: Recipient refused").
_ADDRESS = re.compile(r"[^\s<>@\"']+@[^\s<>@\"']+")


def without_addresses(reply: str) -> str:
    """A server reply with any email address replaced: it goes to job errors and log lines."""
    return _ADDRESS.sub("<address>", reply)


def _classify(exc: Exception, *, message_started: bool) -> Exception:
    """The exception the job should see for an SMTP failure: permanent, retried, or unknown."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]  # one recipient per welcome email
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if exc.code >= 500:
            return MessageRejected(exc.code, without_addresses(exc.message))
        return MessageDeferred(exc.code, without_addresses(exc.message))
    if isinstance(exc, aiosmtplib.SMTPException) and not isinstance(
        exc, ConnectionError | TimeoutError
    ):
        # The server lacks what the settings or the message need (STARTTLS, AUTH,
        # SMTPUTF8): a configuration problem that the next attempt would hit again.
        return PermanentError(
            f"SMTP server cannot do what is asked: {without_addresses(exc.message)}"
        )
    if message_started:
        # Timed out or disconnected after DATA, before the reply: the server may hold it.
        return DeliveryUnknown(
            f"the connection failed while the message was being sent ({exc!r}): "
            "the server may have accepted it, so it is not sent again (no duplicate)"
        )
    return exc  # refused, timed out, disconnected before the message: worth another try
