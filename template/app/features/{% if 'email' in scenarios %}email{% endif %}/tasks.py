"""The background unit of work: send a user's welcome email, skipped once it was sent."""

from typing import Any

from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from app.features.email import service
from app.features.email.config import get_email_settings
from app.tasks import PermanentError, task


@task("email.send_welcome")
async def send_welcome(user_id: int) -> dict[str, Any]:
    """Send user `user_id` their welcome email, unless an earlier run already did.

    Delivery guarantee: at least once. The SMTP server's acceptance and our write of
    `welcome_email_sent_at` cannot be one atomic step. If the process dies (or the database
    write fails) after the server said 250 and before the write, the job runs again and
    the email goes out twice. The other order, marking before sending, turns the same
    crash into a welcome email that never arrives while the user row says it did; a rare
    duplicate is the lesser harm, and it carries the same Message-ID, so mail systems that
    de-duplicate on it show it once. Every other retry sends nothing twice: a refused
    connection, a timeout before the message was sent and a 4xx reply mean the server did
    not take it, and a rerun after success stops at the check below. (A connection lost
    after the message's final dot, before the reply, is ambiguous in SMTP itself; it is
    retried too, on the same at-least-once footing.)
    """
    user = await run_in_threadpool(service.get_user, user_id)
    if user is None:
        raise PermanentError(f"user {user_id} does not exist")
    if user.welcome_email_sent_at is not None:
        return {"to": user.email, "already_sent": True}
    try:
        settings = get_email_settings()
    except ValidationError as exc:
        raise PermanentError(f"the email settings are invalid: {exc}") from exc
    message = service.compose_welcome(user, settings)
    await service.send(message, settings, template="welcome")
    sent_at = await run_in_threadpool(service.mark_welcome_email_sent, user_id)
    return {
        "to": user.email,
        "message_id": message["Message-ID"],
        "sent_at": sent_at.isoformat(),
    }
