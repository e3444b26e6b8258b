"""Request and response bodies of `/webhooks`."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.core.validation import storable
from app.features.webhooks.destinations import UnsafeDestination, parse
from app.features.webhooks.models import DeliveryStatus


def _well_formed(url: str) -> str:
    # The form only: whether http is allowed and where the host points is checked by the
    # router (it depends on ENVIRONMENT and on DNS), with the same messages.
    try:
        parse(url, allow_http=True)
    except UnsafeDestination as exc:
        raise ValueError(str(exc)) from None
    return url


ReceiverUrl = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2048),
    AfterValidator(storable),
    AfterValidator(_well_formed),
]
# `user.registered`, `document.ready`…: dotted lowercase names; `*` subscribes to every event.
EventType = Annotated[
    str, StringConstraints(max_length=100, pattern=r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)+)$")
]
EventTypes = Annotated[list[EventType], Field(min_length=1, max_length=50)]
Description = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=500), AfterValidator(storable)
]


class EndpointCreate(BaseModel):
    url: ReceiverUrl
    events: EventTypes
    description: Description = ""


class EndpointUpdate(BaseModel):
    """Only the fields given change. `enabled: true` re-enables an endpoint disabled by failures."""

    url: ReceiverUrl | None = None
    events: EventTypes | None = None
    description: Description | None = None
    enabled: bool | None = None


class EndpointRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    events: list[str]
    description: str
    enabled: bool
    # Why deliveries stopped (N failures in a row); null while enabled.
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointRead):
    # Shown at creation and rotation only: receivers verify signatures with it.
    secret: str


class EndpointList(BaseModel):
    items: list[EndpointRead]


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    message_id: str  # the `webhook-id` header
    event_type: str
    status: DeliveryStatus
    attempts: int
    response_status: int | None
    response_excerpt: str | None
    last_error: str | None
    job_id: uuid.UUID | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryList(BaseModel):
    items: list[DeliveryRead]
    # Pass as `cursor` for the next page; null on the last page.
    next_cursor: str | None


class DeliveryAccepted(BaseModel):
    delivery_id: uuid.UUID
    job_id: uuid.UUID
