"""`GET /health` and `GET /metrics`."""

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from app.core.database import get_engine


def test_health_reports_each_component(client: TestClient) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["components"]["database"] == "ok"


def read_only(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA query_only = ON")  # SQLite refuses every write on it


def test_health_is_503_while_writes_fail_and_recovers_without_a_restart(
    client: TestClient,
) -> None:
    engine = get_engine()
    event.listen(engine, "connect", read_only)
    engine.pool.dispose()  # the spell begins: every connection opened now refuses writes
    try:
        spell = client.get("/health")
    finally:
        event.remove(engine, "connect", read_only)  # the database is writable again

    assert spell.status_code == 503
    assert spell.json()["components"]["database"] == "down"
    # The pool still holds the connections opened during the spell: they are replaced.
    after = client.get("/health")
    assert after.status_code == 200, after.json()
    assert after.json()["components"]["database"] == "ok"


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE jobs_total counter" in response.text
    assert "# TYPE job_duration_seconds histogram" in response.text
