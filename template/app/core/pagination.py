"""Keyset pagination for list endpoints: the `cursor` query parameter, read or refused."""

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Query, status

from app.jobs.service import decode_cursor

Position = tuple[datetime, uuid.UUID]


def page_position(
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page")
    ] = None,
) -> Position | None:
    """Where the previous page ended (None: the first page); 422 for any other token."""
    if cursor is None:
        return None
    try:
        return decode_cursor(cursor)
    except ValueError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"cursor: {exc}; pass the next_cursor of a previous page, or none",
        ) from None


PagePosition = Annotated[Position | None, Depends(page_position)]
