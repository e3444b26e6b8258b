"""Conversation records (`/conversations/{id}/messages`) and log analysis (`/logs/...`).

The router carries the recorder's lifespan: FastAPI runs it inside the app's own lifespan
(after the database is ready, ended before the job store closes) once the router is included.
"""

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from app.core.database import SessionDep, utcnow
from app.core.logging import request_id_var
from app.core.rate_limit import RateLimit
from app.core.security import ClientScope, OpsScope
from app.core.validation import StorableStr
from app.features.request_logging.schemas import (
    MessageAccepted,
    MessageCreate,
    MessageRead,
    Page,
    RequestRecordRead,
    RequestStats,
    UtcDatetime,
)
from app.features.request_logging.service import (
    list_messages,
    list_requests,
    recorder_lifespan,
    request_stats,
)
from app.features.request_logging.tasks import save_message
from app.tasks import TaskQueueDep

router = APIRouter(lifespan=recorder_lifespan)

ConversationId = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9._:-]{1,128}$",
        description="Letters, digits and . _ : - (at most 128)",
    ),
]
Limit = Annotated[int, Query(ge=1, le=500)]
# The largest OFFSET SQLite and PostgreSQL take (a 64-bit integer); beyond it: a 422, not a 500.
Offset = Annotated[int, Query(ge=0, le=2**63 - 1)]


@router.post(
    "/conversations/{conversation_id}/messages",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["conversations"],
    dependencies=[ClientScope, RateLimit],
)
async def add_message(
    conversation_id: ConversationId, message: MessageCreate, queue: TaskQueueDep
) -> MessageAccepted:
    """Accept a message at once; a job saves it (`GET /jobs/{job_id}` says when)."""
    message_id = uuid.uuid4()
    job_id = await queue.enqueue(
        save_message,
        message_id=str(message_id),
        conversation_id=conversation_id,
        role=message.role,
        content=message.content,
        metadata=message.metadata,
        request_id=request_id_var.get(),
        created_at=utcnow().isoformat(),
    )
    return MessageAccepted(id=message_id, job_id=job_id)


@router.get(
    "/conversations/{conversation_id}/messages", tags=["conversations"], dependencies=[ClientScope]
)
def read_messages(
    conversation_id: ConversationId, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> Page[MessageRead]:
    """Saved messages, oldest first (a message shows up once its job has run)."""
    return list_messages(session, conversation_id, limit=limit, offset=offset)


# Operators only: the records name every client address, path and id that came in.
@router.get("/logs/requests", tags=["logs"], dependencies=[OpsScope])
def read_request_records(
    session: SessionDep,
    path: Annotated[StorableStr | None, Query(description="exact request path")] = None,
    route: Annotated[
        StorableStr | None, Query(description="route template, e.g. /jobs/{job_id}")
    ] = None,
    status_code: Annotated[int | None, Query(alias="status", ge=100, le=599)] = None,
    since: Annotated[UtcDatetime | None, Query(description="ISO 8601; UTC if no zone")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[RequestRecordRead]:
    """Recorded requests, newest first (written in batches: up to a flush interval behind)."""
    return list_requests(
        session,
        path=path,
        route=route,
        status=status_code,
        since=since,
        limit=limit,
        offset=offset,
    )


@router.get("/logs/stats", tags=["logs"], dependencies=[OpsScope])
def read_request_stats(
    session: SessionDep,
    window_seconds: Annotated[int, Query(ge=1, le=7 * 24 * 3600)] = 3600,
    limit: Limit = 50,
    offset: Offset = 0,
) -> RequestStats:
    """Per route, busiest first: count, 5xx error rate, nearest-rank p50/p95/p99 latency (ms).

    Percentiles come from each route's most recent `REQUEST_LOG_STATS_SAMPLE_SIZE` requests.
    """
    return request_stats(session, window_seconds, limit=limit, offset=offset)
