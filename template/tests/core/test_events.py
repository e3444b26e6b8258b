"""Domain events: announced in the caller's transaction; only present scenarios subscribe."""

import importlib.util
import sys
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core import events
from app.core.database import session_scope
from app.jobs.models import Job
from app.tasks import stage
from tests.sample_work import echo


def count_jobs() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0


def test_a_subscriber_writes_in_the_announcing_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    heard: list[tuple[str, dict[str, Any]]] = []

    def subscriber(session: Session, event_type: str, payload: dict[str, Any]) -> None:
        heard.append((event_type, payload))
        stage(session, echo, value=payload["n"])

    monkeypatch.setattr(events, "_subscribers", [subscriber])
    with session_scope() as session:
        events.announce(session, "thing.happened", {"n": "1"})
    with pytest.raises(RuntimeError), session_scope() as session:
        events.announce(session, "thing.happened", {"n": "2"})
        raise RuntimeError("the announcing transaction rolls back")

    assert heard == [("thing.happened", {"n": "1"}), ("thing.happened", {"n": "2"})]
    assert count_jobs() == 1  # what the subscriber staged went with the rollback


def test_only_the_webhooks_scenario_subscribes_and_only_when_present(client: TestClient) -> None:
    present = importlib.util.find_spec("app.features.webhooks") is not None

    modules = {subscriber.__module__ for subscriber in events.subscribers()}

    if present:
        assert modules == {"app.features.webhooks.tasks"}
    else:
        # Announcing costs nothing: no subscriber, and no webhooks code loaded.
        assert modules == set()
        assert not any(name.startswith("app.features.webhooks") for name in sys.modules)
