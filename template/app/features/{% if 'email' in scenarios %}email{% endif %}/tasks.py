"""The background unit of work: send a user's welcome email, at most once."""

import asyncio
import logging
from datetime import datetime
from typing import Any

from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from app.features.email import service
from app.features.email.config import get_email_settings
from app.tasks import PermanentError, task

logger = logging.getLogger(__name__)

# Seconds between tries of recording a delivered welcome email (see `_record_sent`).
RECORD_SENT_DELAYS = (0.1, 0.5, 2.0, 5.0)


@task("email.send_welcome")
async def send_welcome(user_id: int) -> dict[str, Any]:
    """Send user `user_id` their welcome email, unless an earlier run sent it or may have.

    Delivery guarantee: at most once. Before the first byte goes to the server, the run
    claims the email on the user row (`welcome_email_sending_at`, set only while unset).
    A failure that proves the server did not take the message (connection refused, a
    timeout or disconnect before the message was sent, a 4xx or 5xx reply) drops the
    claim, so the retry sends. After the server's 250, recording `welcome_email_sent_at`
    is retried in place. A run that finds the claim without the record (the process died
    mid-send, or the connection broke while the message was on its way) cannot know
    whether the email arrived: it fails at once and sends nothing.
    """
    user = await run_in_threadpool(service.get_user, user_id)
    if user is None:
        raise PermanentError(f"user {user_id} does not exist")
    if user.welcome_email_sent_at is not None:
        return {"user_id": user_id, "already_sent": True}
    try:
        settings = get_email_settings()
    except ValidationError as exc:
        raise PermanentError(f"the email settings are invalid: {exc}") from exc
    message = service.compose_welcome(user, settings)
    if not await run_in_threadpool(service.claim_welcome_email, user_id):
        return await _claimed_by_another_run(user_id)
    try:
        await service.send(message, settings, template="welcome")
    except service.DeliveryUnknown:
        raise  # the claim stays: no later run may send it again
    except Exception:
        await run_in_threadpool(service.release_welcome_email, user_id)
        raise
    sent_at = await _record_sent(user_id)
    # Ids only: job results and log lines are read by operators, who need no address.
    return {
        "user_id": user_id,
        "message_id": message["Message-ID"],
        "sent_at": sent_at.isoformat(),
    }


async def _claimed_by_another_run(user_id: int) -> dict[str, Any]:
    """The claim is taken: that run has sent the email since, or its outcome is unknown."""
    user = await run_in_threadpool(service.get_user, user_id)
    if user is None:
        raise PermanentError(f"user {user_id} does not exist")
    if user.welcome_email_sent_at is not None:
        return {"user_id": user_id, "already_sent": True}
    started = user.welcome_email_sending_at
    if started is None:  # that run failed without sending in the meantime: try again later
        raise RuntimeError(f"another run was sending the welcome email to user {user_id}")
    raise service.DeliveryUnknown(
        f"delivery of the welcome email to user {user_id} is unknown: a run started sending it "
        f"at {started:%Y-%m-%d %H:%M:%S} UTC and never recorded the outcome (it stopped "
        "mid-send); it was not sent again, to avoid a duplicate"
    )


async def _record_sent(user_id: int) -> datetime:
    """Record the delivery; a failing write is retried here, as retrying the job would resend."""
    for delay in RECORD_SENT_DELAYS:
        try:
            return await run_in_threadpool(service.mark_welcome_email_sent, user_id)
        except Exception as exc:
            logger.warning("recording a sent welcome email failed, retry in %.1fs: %r", delay, exc)
            await asyncio.sleep(delay)
    try:
        return await run_in_threadpool(service.mark_welcome_email_sent, user_id)
    except Exception as exc:
        raise PermanentError(
            f"the SMTP server accepted the welcome email, but recording it failed ({exc!r}); "
            "it is not sent again"
        ) from exc
