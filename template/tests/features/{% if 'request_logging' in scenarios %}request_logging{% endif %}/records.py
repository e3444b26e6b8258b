"""Request records made by hand, for tests that need known values."""

from datetime import UTC, datetime
from typing import Any


def make_record(**overrides: Any) -> dict[str, Any]:
    """A request record as the middleware makes it, with `overrides` applied."""
    return {
        "request_id": "test-request",
        "method": "GET",
        "route": "/known/{id}",
        "path": "/known/1",
        "status": 200,
        "latency_ms": 1.0,
        "client": "127.0.0.1",
        "user_agent": "tests",
        "created_at": datetime.now(UTC),
        **overrides,
    }
