"""`/webhooks`: register endpoints, send a test event, list deliveries and replay one."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.concurrency import run_in_threadpool

from app.core.config import get_security_settings
from app.core.pagination import PagePosition
from app.core.rate_limit import RateLimit
from app.core.security import ClientScope
from app.features.webhooks import destinations, service
from app.features.webhooks.config import get_webhook_settings
from app.features.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.features.webhooks.schemas import (
    DeliveryAccepted,
    DeliveryList,
    DeliveryRead,
    EndpointCreate,
    EndpointList,
    EndpointRead,
    EndpointUpdate,
    EndpointWithSecret,
)
from app.features.webhooks.tasks import deliver
from app.jobs.service import QueuedJob
from app.tasks import TaskQueueDep

router = APIRouter(prefix="/webhooks", tags=["webhooks"], dependencies=[ClientScope])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown endpoint"}}
DISABLED: dict[int | str, dict[str, Any]] = {409: {"description": "The endpoint is disabled"}}


async def check_destination(url: str) -> None:
    """422 unless `url` may receive webhooks (see destinations.py): https in production,
    and a host resolving to public addresses only."""
    try:
        await destinations.check(
            url,
            allow_http=get_security_settings().environment == "development",
            allow_private=get_webhook_settings().allow_private_urls,
        )
    except destinations.UnsafeDestination as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"url: {exc}") from None


def not_found(endpoint_id: uuid.UUID) -> HTTPException:
    return HTTPException(
        status.HTTP_404_NOT_FOUND, detail=f"Webhook endpoint {endpoint_id} not found"
    )


def found(endpoint: WebhookEndpoint | None, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    if endpoint is None:
        raise not_found(endpoint_id)
    return endpoint


@router.post(
    "/endpoints",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "WEBHOOKS_MAX_ENDPOINTS endpoints exist already"}},
)
async def create_endpoint(payload: EndpointCreate, response: Response) -> EndpointWithSecret:
    """Register a receiver. The answer holds its signing secret: the only time it is shown
    (`rotate-secret` makes a new one)."""
    await check_destination(payload.url)
    limit = get_webhook_settings().max_endpoints
    try:
        endpoint = await run_in_threadpool(
            service.create_endpoint, payload.url, payload.events, payload.description, limit
        )
    except service.TooManyEndpoints:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"{limit} webhook endpoints exist (WEBHOOKS_MAX_ENDPOINTS): delete one first",
        ) from None
    response.headers["Location"] = f"/webhooks/endpoints/{endpoint.id}"
    return EndpointWithSecret.model_validate(endpoint)


@router.get("/endpoints")
def list_endpoints() -> EndpointList:
    return EndpointList(items=[EndpointRead.model_validate(e) for e in service.list_endpoints()])


@router.get("/endpoints/{endpoint_id}", responses=NOT_FOUND)
def read_endpoint(endpoint_id: uuid.UUID) -> EndpointRead:
    return EndpointRead.model_validate(found(service.get_endpoint(endpoint_id), endpoint_id))


@router.patch("/endpoints/{endpoint_id}", responses=NOT_FOUND)
async def update_endpoint(endpoint_id: uuid.UUID, payload: EndpointUpdate) -> EndpointRead:
    """Change the fields given; `{"enabled": true}` resumes deliveries after failures."""
    changes = payload.model_dump(exclude_unset=True)
    for name in ("url", "events", "description", "enabled"):
        if name in changes and changes[name] is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{name}: must not be null"
            )
    if "url" in changes:
        await check_destination(changes["url"])
    endpoint = await run_in_threadpool(service.update_endpoint, endpoint_id, changes)
    return EndpointRead.model_validate(found(endpoint, endpoint_id))


@router.delete(
    "/endpoints/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND
)
def delete_endpoint(endpoint_id: uuid.UUID) -> None:
    if not service.delete_endpoint(endpoint_id):
        raise not_found(endpoint_id)


@router.post("/endpoints/{endpoint_id}/rotate-secret", responses=NOT_FOUND)
def rotate_secret(endpoint_id: uuid.UUID) -> EndpointWithSecret:
    """A new signing secret, shown once; the old one signs nothing from now on."""
    endpoint = found(service.rotate_secret(endpoint_id), endpoint_id)
    return EndpointWithSecret.model_validate(endpoint)


async def accepted(
    staged: tuple[WebhookDelivery, QueuedJob], queue: TaskQueueDep
) -> DeliveryAccepted:
    delivery, job = staged
    # The delivery and its job committed together: a crash here leaves the job `queued`
    # for recovery, never a delivery nobody sends.
    await queue.dispatch(job)
    return DeliveryAccepted(delivery_id=delivery.id, job_id=job.id)


@router.post(
    "/endpoints/{endpoint_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**NOT_FOUND, **DISABLED},
    dependencies=[RateLimit],  # each one is a request to a server the caller chose
)
async def send_test(endpoint_id: uuid.UUID, queue: TaskQueueDep) -> DeliveryAccepted:
    """Deliver a `webhook.test` event to this endpoint."""
    try:
        staged = await run_in_threadpool(service.send_test, endpoint_id, deliver)
    except service.EndpointDisabled as exc:
        raise disabled(exc) from None
    if staged is None:
        raise not_found(endpoint_id)
    return await accepted(staged, queue)


def disabled(exc: service.EndpointDisabled) -> HTTPException:
    return HTTPException(
        status.HTTP_409_CONFLICT,
        detail=f"The webhook endpoint is disabled ({exc}): PATCH it with "
        + '{"enabled": true} first',
    )


@router.get("/endpoints/{endpoint_id}/deliveries", responses=NOT_FOUND)
def list_deliveries(
    endpoint_id: uuid.UUID,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    position: PagePosition = None,
) -> DeliveryList:
    """The endpoint's deliveries, newest first, a page at a time."""
    found(service.get_endpoint(endpoint_id), endpoint_id)
    items, next_cursor = service.page_deliveries(endpoint_id, position, limit)
    return DeliveryList(
        items=[DeliveryRead.model_validate(d) for d in items], next_cursor=next_cursor
    )


@router.get("/deliveries/{delivery_id}", responses={404: {"description": "Unknown delivery"}})
def read_delivery(delivery_id: uuid.UUID) -> DeliveryRead:
    delivery = service.get_delivery(delivery_id)
    if delivery is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"Delivery {delivery_id} not found")
    return DeliveryRead.model_validate(delivery)


@router.post(
    "/deliveries/{delivery_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    responses={404: {"description": "Unknown delivery"}, **DISABLED},
    dependencies=[RateLimit],
)
async def replay_delivery(delivery_id: uuid.UUID, queue: TaskQueueDep) -> DeliveryAccepted:
    """Deliver the same message again (same body, same `webhook-id`) as a new delivery."""
    try:
        staged = await run_in_threadpool(service.replay, delivery_id, deliver)
    except service.EndpointDisabled as exc:
        raise disabled(exc) from None
    if staged is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"Delivery {delivery_id} not found")
    return await accepted(staged, queue)
