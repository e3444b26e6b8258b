"""The background unit of work: one signed delivery of one event to one endpoint."""

import uuid
from typing import Any

import httpx
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.core.config import get_security_settings
from app.core.events import subscribe
from app.features.webhooks import destinations, service
from app.features.webhooks.config import get_webhook_settings
from app.features.webhooks.models import DeliveryStatus
from app.tasks import PermanentError, RetryLater, hand_over_soon, task

# Answers worth another attempt: the receiver is overloaded, restarting or rate-limiting.
# Any other 4xx (410 Gone, 401, 404…) says the request itself is refused: no retry helps.
RETRIED_STATUSES = frozenset({408, 429})


@task("webhooks.deliver")
async def deliver(delivery_id: str) -> dict[str, Any]:
    """POST delivery `delivery_id` to its endpoint, signed, and record what happened.

    Each attempt sends the same body under the same `webhook-id` (a fresh timestamp and
    signature), so a receiver deduplicates retries. Network errors, timeouts, 5xx, 408 and
    429 are retried with backoff (429 and 503 after their `Retry-After`, bounded); other
    answers fail the delivery at once. The last failure counts against the endpoint.
    """
    settings = get_webhook_settings()
    attempt = await run_in_threadpool(service.begin_attempt, uuid.UUID(delivery_id))
    if attempt is None:
        raise PermanentError(f"delivery {delivery_id} no longer exists (its endpoint was deleted)")
    if attempt.status == DeliveryStatus.SUCCEEDED:
        return {"delivery_id": delivery_id, "already_delivered": True}
    final = attempt.number >= deliver.attempts_allowed

    async def failed(error: str, *, permanent: bool, **answer: Any) -> None:
        await run_in_threadpool(
            lambda: service.record_failure(
                attempt.delivery_id,
                error,
                final=final or permanent,
                disable_after=settings.disable_after_failures,
                **answer,
            )
        )

    if not attempt.enabled:
        await failed("the endpoint is disabled", permanent=True)
        raise PermanentError(f"delivery {delivery_id}: the endpoint is disabled")
    try:
        # Checked again at each attempt: the name may resolve elsewhere than at registration.
        destination = await destinations.check(
            attempt.url,
            allow_http=get_security_settings().environment == "development",
            allow_private=settings.allow_private_urls,
        )
    except destinations.UnsafeDestination as exc:
        await failed(str(exc), permanent=True)
        raise PermanentError(str(exc)) from None
    try:
        answer = await service.post(attempt, destination, settings)
    except (httpx.TimeoutException, TimeoutError):
        error = "the receiver did not answer in time"
        await failed(error, permanent=False)
        raise TimeoutError(error) from None
    except httpx.InvalidURL as exc:  # a URL the client cannot send to: no retry helps
        await failed(f"the URL cannot be sent to: {exc}", permanent=True)
        raise PermanentError(f"the URL cannot be sent to: {exc}") from None
    except httpx.HTTPError as exc:
        error = f"the receiver could not be reached: {exc!r}"
        await failed(error, permanent=False)
        raise ConnectionError(error) from None

    if 200 <= answer.status < 300:
        delivered_at = await run_in_threadpool(
            service.record_success, attempt.delivery_id, answer.status, answer.excerpt
        )
        return {
            "delivery_id": delivery_id,
            "status": answer.status,
            "delivered_at": delivered_at.isoformat(),
        }
    retried = answer.status >= 500 or answer.status in RETRIED_STATUSES
    error = f"the receiver answered {answer.status}" + (
        "" if retried else " (not retried: only 408, 429 and 5xx are)"
    )
    await failed(error, permanent=not retried, status=answer.status, excerpt=answer.excerpt)
    if not retried:
        raise PermanentError(error)
    wait = service.retry_after_seconds(answer.retry_after, settings.retry_after_max_seconds)
    if wait is not None:
        raise RetryLater(f"{error}, Retry-After {answer.retry_after}", wait)
    raise RuntimeError(error)


@subscribe
def deliver_event(session: Session, event_type: str, payload: dict[str, Any]) -> None:
    """Another scenario's event: a delivery per subscribed endpoint, in its transaction.

    The deliveries and their jobs commit with the event's rows (an outbox: no event is
    lost to a crash), and are handed to the backend once that transaction committed.
    """
    jobs = service.stage_event(session, event_type, payload, deliver)
    if jobs:

        def hand_over(_session: Session) -> None:
            for job in jobs:
                hand_over_soon(job)

        event.listen(session, "after_commit", hand_over, once=True)
