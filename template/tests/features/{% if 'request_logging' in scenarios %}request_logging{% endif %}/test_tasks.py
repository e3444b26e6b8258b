"""Saving a conversation message is idempotent: running the job again adds no duplicate."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.database import session_scope
from app.core.migrate import upgrade_to_heads
from app.features.request_logging.models import ConversationMessage
from app.features.request_logging.tasks import save_message


def test_running_the_save_twice_keeps_one_message() -> None:
    upgrade_to_heads()
    message_id = str(uuid.uuid4())
    kwargs = {
        "message_id": message_id,
        "conversation_id": "retried",
        "role": "user",
        "content": "only once",
        "metadata": {"turn": 1},
        "request_id": "req-1",
        "created_at": datetime.now(UTC).isoformat(),
    }

    first = save_message.fn(**kwargs)
    second = save_message.fn(**kwargs)  # as after a crash or a redelivery

    with session_scope() as session:
        rows = session.scalars(
            select(ConversationMessage).where(ConversationMessage.conversation_id == "retried")
        ).all()
    assert first == second == {"message_id": message_id}
    assert [(str(row.id), row.content, row.metadata_) for row in rows] == [
        (message_id, "only once", {"turn": 1})
    ]


def test_the_job_logs_ids_never_the_message_content(
    client: TestClient,
    wait_for_job: Callable[..., dict[str, Any]],
    service_log: Callable[[], str],
) -> None:
    content = "my test results came back positive"
    accepted = client.post(
        "/conversations/private/messages", json={"role": "user", "content": content}
    ).json()
    job = wait_for_job(accepted["job_id"])

    logged = service_log()
    assert job["status"] == "succeeded"
    assert accepted["id"] in logged  # the line that says it was saved names it by id
    assert content not in logged
