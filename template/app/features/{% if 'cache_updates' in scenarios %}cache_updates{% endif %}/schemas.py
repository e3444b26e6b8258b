"""Item and stats JSON as clients see it (and as the cache stores it)."""

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
)

from app.core.validation import storable

# Exact in Python, a plain number in JSON (clients expect 9.99, not "9.99").
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=12, decimal_places=2),
    PlainSerializer(float, return_type=float, when_used="json"),
]
# The constraints come before `storable`: after a validator, pydantic checks lengths before
# stripping, and "   " was stored as an empty name.
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(storable),
]


class ItemIn(BaseModel):
    """Body of `POST /items` and `PUT /items/{id}` (a full replacement)."""

    name: Name
    price: Money


class ItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    price: Money
    version: int


class ItemWritten(ItemRead):
    """A write's answer: the item as stored, and the job that refreshes the cache."""

    job_id: uuid.UUID


# A sum of prices: it has as many digits as the items make it (three at the largest price
# already pass Money's 12), so it is bounded by the BigInteger of cents it is summed in.
Total = Annotated[
    Decimal,
    Field(ge=0, decimal_places=2),
    PlainSerializer(float, return_type=float, when_used="json"),
]


class ItemStats(BaseModel):
    """An aggregate over every item, standing in for an expensive report."""

    count: int
    total_value: Total
    average_price: Money | None
    min_price: Money | None
    max_price: Money | None
    # Number of writes to items so far (inserts, updates and deletes; see `ItemWrites`):
    # it grows with every write, so a newer computation always carries a larger version.
    version: int
    computed_at: datetime
