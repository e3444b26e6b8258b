"""Endpoints (register, change, rotate), deliveries (stage, page, replay) and one signed POST."""

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from app.core.database import get_sessionmaker, session_scope, utcnow
from app.features.webhooks.config import WebhookSettings
from app.features.webhooks.destinations import Destination
from app.features.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from app.jobs.service import QueuedJob, encode_cursor
from app.tasks import Task, stage

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
EXCERPT_CHARS = 200
USER_AGENT = "webhooks/1 (+Standard Webhooks)"
# What a response excerpt keeps: printable text; controls (NUL among them) become spaces.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


class TooManyEndpoints(Exception):
    """WEBHOOKS_MAX_ENDPOINTS endpoints exist already."""


class EndpointDisabled(Exception):
    """The endpoint is disabled: nothing is delivered to it until it is enabled again."""


# --- Endpoints -----------------------------------------------------------------------------


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form: `whsec_` + base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def create_endpoint(url: str, events: list[str], description: str, limit: int) -> WebhookEndpoint:
    now = utcnow()
    with session_scope() as session:
        if (session.scalar(select(func.count()).select_from(WebhookEndpoint)) or 0) >= limit:
            raise TooManyEndpoints(limit)
        endpoint = WebhookEndpoint(
            id=uuid.uuid4(),
            url=url,
            events=sorted(set(events)),
            description=description,
            secret=new_secret(),
            enabled=True,
            disabled_reason=None,
            consecutive_failures=0,
            created_at=now,
            updated_at=now,
        )
        session.add(endpoint)
    return endpoint


def list_endpoints() -> list[WebhookEndpoint]:
    with get_sessionmaker()() as session:
        return list(session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at)))


def get_endpoint(endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
    with get_sessionmaker()() as session:
        return session.get(WebhookEndpoint, endpoint_id)


def update_endpoint(endpoint_id: uuid.UUID, changes: dict[str, Any]) -> WebhookEndpoint | None:
    """Apply the given fields; enabling an endpoint also forgets its run of failures."""
    with session_scope() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None:
            return None
        for name, value in changes.items():
            setattr(endpoint, name, sorted(set(value)) if name == "events" else value)
        if changes.get("enabled") is True:
            endpoint.disabled_reason = None
            endpoint.consecutive_failures = 0
        elif changes.get("enabled") is False:
            endpoint.disabled_reason = "disabled by a client"
        endpoint.updated_at = utcnow()
    return endpoint


def rotate_secret(endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
    """A new secret: deliveries signed from now on use it (attempts under way may not)."""
    return _set(endpoint_id, secret=new_secret())


def _set(endpoint_id: uuid.UUID, **values: Any) -> WebhookEndpoint | None:
    with session_scope() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None:
            return None
        for name, value in values.items():
            setattr(endpoint, name, value)
        endpoint.updated_at = utcnow()
    return endpoint


def delete_endpoint(endpoint_id: uuid.UUID) -> bool:
    """Delete the endpoint and its deliveries; their jobs then fail at once, sending nothing."""
    with session_scope() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None:
            return False
        # Explicit, not left to ON DELETE CASCADE: SQLite honours that only with its pragma.
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id))
        session.delete(endpoint)
    return True


# --- Deliveries ----------------------------------------------------------------------------


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def event_body(event_type: str, data: dict[str, Any]) -> str:
    """The JSON every attempt of an event's delivery sends, in the Standard Webhooks shape."""
    return json.dumps(
        {"type": event_type, "timestamp": utcnow().isoformat(), "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def stage_delivery(
    session: Session,
    endpoint_id: uuid.UUID,
    event_type: str,
    body: str,
    deliver: Task,
    message_id: str | None = None,
) -> tuple[WebhookDelivery, QueuedJob]:
    """A pending delivery and its job, in the caller's transaction (they commit together)."""
    delivery = WebhookDelivery(
        id=uuid.uuid4(),
        endpoint_id=endpoint_id,
        message_id=message_id or new_message_id(),
        event_type=event_type,
        status=DeliveryStatus.PENDING,
        attempts=0,
        response_status=None,
        response_excerpt=None,
        last_error=None,
        created_at=utcnow(),
        delivered_at=None,
        body=body,
    )
    job = stage(session, deliver, delivery_id=str(delivery.id))
    delivery.job_id = job.id
    session.add(delivery)
    return delivery, job


def stage_event(
    session: Session, event_type: str, data: dict[str, Any], deliver: Task
) -> list[QueuedJob]:
    """One delivery (and job) per enabled endpoint subscribed to `event_type`, or to `*`."""
    endpoints = session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.enabled))
    subscribed = [e for e in endpoints if event_type in e.events or "*" in e.events]
    if not subscribed:
        return []
    body = event_body(event_type, data)
    return [stage_delivery(session, e.id, event_type, body, deliver)[1] for e in subscribed]


def send_test(endpoint_id: uuid.UUID, deliver: Task) -> tuple[WebhookDelivery, QueuedJob] | None:
    """Stage a `webhook.test` event for one endpoint; None if there is no such endpoint."""
    with session_scope() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None:
            return None
        if not endpoint.enabled:
            raise EndpointDisabled(endpoint.disabled_reason)
        body = event_body("webhook.test", {"endpoint_id": str(endpoint_id)})
        return stage_delivery(session, endpoint_id, "webhook.test", body, deliver)


def replay(delivery_id: uuid.UUID, deliver: Task) -> tuple[WebhookDelivery, QueuedJob] | None:
    """A new delivery of the same message (same body, same `webhook-id`); None if unknown."""
    with session_scope() as session:
        original = session.get(WebhookDelivery, delivery_id)
        if original is None:
            return None
        endpoint = session.get(WebhookEndpoint, original.endpoint_id)
        if endpoint is not None and not endpoint.enabled:
            raise EndpointDisabled(endpoint.disabled_reason)
        return stage_delivery(
            session,
            original.endpoint_id,
            original.event_type,
            original.body,
            deliver,
            message_id=original.message_id,
        )


def get_delivery(delivery_id: uuid.UUID) -> WebhookDelivery | None:
    with get_sessionmaker()() as session:
        return session.get(WebhookDelivery, delivery_id)


def page_deliveries(
    endpoint_id: uuid.UUID, cursor: tuple[datetime, uuid.UUID] | None, limit: int
) -> tuple[list[WebhookDelivery], str | None]:
    """One page of an endpoint's deliveries, newest first, after `cursor` (keyset pagination)."""
    statement = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if cursor is not None:
        created_at, last_id = cursor
        statement = statement.where(
            or_(
                WebhookDelivery.created_at < created_at,
                and_(WebhookDelivery.created_at == created_at, WebhookDelivery.id < last_id),
            )
        )
    statement = statement.order_by(
        WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()
    ).limit(limit + 1)
    with get_sessionmaker()() as session:
        rows = list(session.scalars(statement))
    items = rows[:limit]
    more = len(rows) > limit
    return items, encode_cursor(items[-1].created_at, items[-1].id) if more and items else None


# --- One attempt ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """What one attempt sends, read when it starts (the endpoint's URL and secret of now)."""

    delivery_id: uuid.UUID
    number: int
    status: DeliveryStatus
    message_id: str
    body: str
    url: str
    secret: str
    enabled: bool


def begin_attempt(delivery_id: uuid.UUID) -> Attempt | None:
    """Count one more attempt of the delivery; None if it (or its endpoint) no longer exists."""
    with session_scope() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return None
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        if endpoint is None:
            return None
        if delivery.status == DeliveryStatus.PENDING:
            delivery.attempts += 1
        return Attempt(
            delivery_id,
            delivery.attempts,
            DeliveryStatus(delivery.status),
            delivery.message_id,
            delivery.body,
            endpoint.url,
            endpoint.secret,
            endpoint.enabled,
        )


def record_success(delivery_id: uuid.UUID, status: int, excerpt: str) -> datetime:
    """The receiver took it: the delivery succeeded and its endpoint's run of failures ends."""
    now = utcnow()
    with session_scope() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return now
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.response_status, delivery.response_excerpt = status, excerpt
        delivery.last_error, delivery.delivered_at = None, now
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == delivery.endpoint_id)
            .values(consecutive_failures=0)
        )
    return now


def record_failure(
    delivery_id: uuid.UUID,
    error: str,
    *,
    final: bool,
    disable_after: int,
    status: int | None = None,
    excerpt: str | None = None,
) -> None:
    """Note a failed attempt; when it was the last, fail the delivery and count it against
    the endpoint, which is disabled after `disable_after` failed deliveries in a row."""
    with session_scope() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return
        delivery.response_status, delivery.response_excerpt = status, excerpt
        delivery.last_error = error[:1000]
        if not final or delivery.status != DeliveryStatus.PENDING:
            return
        delivery.status = DeliveryStatus.FAILED
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id, with_for_update=True)
        if endpoint is None:
            return
        endpoint.consecutive_failures += 1
        if endpoint.enabled and endpoint.consecutive_failures >= disable_after:
            endpoint.enabled = False
            endpoint.disabled_reason = (
                f"disabled after {endpoint.consecutive_failures} failed deliveries in a row; "
                f"the last: {error}"
            )[:1000]
            endpoint.updated_at = utcnow()


# --- Signing and sending -------------------------------------------------------------------


def signature(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header: `v1,` + base64 of HMAC-SHA256 over `id.timestamp.body`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.{body}".encode()
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


@dataclass(frozen=True)
class Answer:
    """What the receiver said: its status, the start of its body, and any `Retry-After`."""

    status: int
    excerpt: str
    retry_after: str | None


def excerpt(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    return _CONTROLS.sub(" ", text)[:EXCERPT_CHARS]


def retry_after_seconds(value: str | None, ceiling: float) -> float | None:
    """A `Retry-After` (seconds, or an HTTP date) as seconds from now, at most `ceiling`."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(max(seconds, 0.0), ceiling)


async def post(attempt: Attempt, destination: Destination, settings: WebhookSettings) -> Answer:
    """POST the signed body once; transport errors and timeouts propagate (httpx's own).

    Redirects are not followed (a 3xx is the receiver's answer, and could point inside
    the network); at most WEBHOOKS_MAX_RESPONSE_BYTES of the answer are read, undecoded.
    """
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "accept-encoding": "identity",  # the excerpt is read raw: no decompression bomb
        "webhook-id": attempt.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(attempt.secret, attempt.message_id, timestamp, attempt.body),
    }
    url = httpx.URL(destination.url)
    extensions: dict[str, Any] = {}
    if destination.address is not None:
        # Connect to the address that was checked (a second lookup could answer another);
        # the name still goes in the Host header and in TLS (SNI, certificate check).
        headers["host"] = url.netloc.decode("ascii")
        extensions["sni_hostname"] = destination.host
        url = url.copy_with(host=str(destination.address))
    timeout = httpx.Timeout(settings.read_timeout_seconds, connect=settings.connect_timeout_seconds)
    # Not trust_env: a proxy from the environment would connect wherever it resolves.
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as http:
        request = http.build_request(
            "POST", url, content=attempt.body.encode(), headers=headers, extensions=extensions
        )
        # One bound on the whole exchange: a receiver dripping a byte at a time stays
        # within each read's timeout, not within this.
        async with asyncio.timeout(
            settings.connect_timeout_seconds + settings.read_timeout_seconds
        ):
            response = await http.send(request, stream=True)
            try:
                received = bytearray()
                async for chunk in response.aiter_raw():
                    received += chunk
                    if len(received) >= settings.max_response_bytes:
                        break
            finally:
                await response.aclose()
    return Answer(
        response.status_code,
        excerpt(bytes(received[: settings.max_response_bytes])),
        response.headers.get("retry-after"),
    )
