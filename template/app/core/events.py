"""Domain events: a scenario announces what happened; others subscribe, none imports another.

    announce(session, "user.registered", {"id": user.id, ...})   # in the row's transaction

A subscriber (the webhooks scenario, when it is present) is called in the announcing
transaction, so what it writes (deliveries and their jobs: an outbox) commits with the
event's rows or not at all. With no subscriber, `announce` does nothing and imports
nothing. Payloads are JSON values: ids and the fields a receiver needs, documented in
the announcing scenario's README.
"""

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

Subscriber = Callable[[Session, str, dict[str, Any]], None]

_subscribers: list[Subscriber] = []


def subscribe(subscriber: Subscriber) -> Subscriber:
    """Register `subscriber(session, event_type, payload)`; as a decorator, at import."""
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)
    return subscriber


def subscribers() -> list[Subscriber]:
    return list(_subscribers)


def announce(session: Session, event_type: str, payload: dict[str, Any]) -> None:
    """Tell every subscriber that `event_type` happened, inside the caller's transaction.

    A subscriber's error is the transaction's: the event and what it causes commit together.
    """
    for subscriber in _subscribers:
        subscriber(session, event_type, payload)
