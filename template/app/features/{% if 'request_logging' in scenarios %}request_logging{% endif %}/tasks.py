"""Unit of work: save one conversation message, idempotently."""

import logging
import uuid
from datetime import datetime
from typing import Any

from app.core.database import session_scope
from app.core.events import announce
from app.features.request_logging.config import get_request_log_settings
from app.features.request_logging.models import ConversationMessage, RequestRecord
from app.jobs.retention import keep_for
from app.tasks import task

logger = logging.getLogger(__name__)

# The retention job deletes request records older than REQUEST_LOG_RETENTION.
keep_for(
    RequestRecord.__table__, RequestRecord.created_at, lambda: get_request_log_settings().retention
)


@task("request_logging.save_message")
def save_message(
    message_id: str,
    conversation_id: str,
    role: str,
    content: str,
    metadata: dict[str, Any] | None,
    request_id: str | None,
    created_at: str,
) -> dict[str, str]:
    """Upsert the message under the id chosen when the request was accepted.

    A job can run again after a crash or redelivery; the same id makes the re-run rewrite
    the same row instead of adding a duplicate. `created_at` is the acceptance time, so
    the conversation keeps the order the client sent it in, whenever the job runs.
    """
    with session_scope() as session:
        session.merge(
            ConversationMessage(
                id=uuid.UUID(message_id),
                conversation_id=conversation_id,
                role=role,
                content=content,
                metadata_=metadata,
                request_id=request_id,
                created_at=datetime.fromisoformat(created_at),
            )
        )
        # Ids, not the content: a receiver reads it with GET /conversations/{id}/messages.
        announce(
            session,
            "message.saved",
            {
                "id": message_id,
                "conversation_id": conversation_id,
                "role": role,
                "request_id": request_id,
                "created_at": created_at,
            },
        )
    logger.info(
        "conversation message saved",
        extra={"conversation_id": conversation_id, "message_id": message_id},
    )
    return {"message_id": message_id}
