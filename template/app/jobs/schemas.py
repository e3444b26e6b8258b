"""Job JSON as clients see it."""

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.jobs.models import JobStatus


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    status: JobStatus
    attempts: int
    error: str | None
    result: Any | None
    request_id: str | None
    created_at: datetime
    updated_at: datetime
