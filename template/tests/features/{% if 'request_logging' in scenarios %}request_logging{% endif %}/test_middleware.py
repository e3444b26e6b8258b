"""Every request is recorded, failures included, in far fewer transactions than requests."""

import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import BackgroundTasks, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from app.core.database import get_engine, session_scope
from app.features.request_logging.models import RequestRecord
from tests.conftest import Keys
from tests.sample_work import create_sample_app

WaitForRecords = Callable[..., list[dict[str, Any]]]


def count_records(path: str) -> int:
    with session_scope() as session:
        return (
            session.scalar(
                select(func.count()).select_from(RequestRecord).where(RequestRecord.path == path)
            )
            or 0
        )


def app_with_failing_route() -> FastAPI:
    app = create_sample_app()

    @app.get("/failing/{item}")
    async def failing(item: str) -> None:
        raise RuntimeError(f"unhandled failure for {item}")

    return app


def test_unhandled_exception_is_recorded_as_500_with_its_request_id(
    wait_for_records: WaitForRecords,
) -> None:
    with TestClient(app_with_failing_route(), raise_server_exceptions=False) as client:
        response = client.get(
            "/failing/42", headers={"X-Request-ID": "failing-1", "User-Agent": "probe/1.0"}
        )
        [record] = wait_for_records(client, path="/failing/42")

    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "failing-1"
    assert record["status"] == 500
    assert record["request_id"] == "failing-1"
    assert record["route"] == "/failing/{item}"
    assert record["method"] == "GET"
    assert record["user_agent"] == "probe/1.0"
    assert record["client"]
    assert record["latency_ms"] >= 0


def test_latency_is_what_the_client_waited_not_the_background_work_after_it(
    wait_for_records: WaitForRecords,
) -> None:
    app = create_sample_app()

    @app.post("/slow-afterwards")
    async def slow_afterwards(background_tasks: BackgroundTasks) -> dict[str, bool]:
        background_tasks.add_task(time.sleep, 0.5)  # runs after the answer, in a thread
        return {"ok": True}

    with TestClient(app) as client:
        response = client.post("/slow-afterwards")  # returns once the background task ends
        [record] = wait_for_records(client, path="/slow-afterwards")

    assert response.status_code == 200
    assert record["latency_ms"] < 500


def test_not_found_and_validation_errors_are_recorded(
    client: TestClient, wait_for_records: WaitForRecords
) -> None:
    missing = client.get("/no/such/page")
    malformed = client.get("/jobs/not-a-uuid", headers={"X-Request-ID": "bad-id-1"})

    [not_found] = wait_for_records(client, path="/no/such/page")
    [invalid] = wait_for_records(client, path="/jobs/not-a-uuid")

    assert (missing.status_code, malformed.status_code) == (404, 422)
    assert not_found["status"] == 404
    assert not_found["route"] is None  # no route matched
    assert not_found["request_id"] == missing.headers["X-Request-ID"]
    assert invalid["status"] == 422
    assert invalid["route"] == "/jobs/{job_id}"
    assert invalid["request_id"] == "bad-id-1"


def test_a_path_with_nul_is_recorded_with_a_replacement_character(
    client: TestClient, wait_for_records: WaitForRecords
) -> None:
    """PostgreSQL refuses NUL in text: kept, it would fail its batch and every retry of it."""
    response = client.get("/a%00b")

    [record] = wait_for_records(client, path="/a\ufffdb")

    assert response.status_code == 404
    assert record["request_id"] == response.headers["X-Request-ID"]


def test_burst_of_500_requests_is_written_in_far_fewer_transactions(
    request_log_settings: Callable[..., None],
) -> None:
    # Only full batches wake the flusher, so transactions are counted, not timed.
    request_log_settings(batch_size=100, flush_interval_seconds=3600)
    commits: list[object] = []

    with TestClient(create_sample_app()) as client:
        event.listen(get_engine(), "commit", lambda _connection: commits.append(1))
        for number in range(500):
            assert client.get(f"/burst/{number % 7}").status_code == 404
    transactions = len(commits)  # counted at shutdown: reading the rows back commits too

    assert sum(count_records(f"/burst/{n}") for n in range(7)) == 500
    assert transactions <= 6  # five full batches, and whatever is left at shutdown


def test_clean_shutdown_writes_what_is_still_buffered(
    request_log_settings: Callable[..., None],
) -> None:
    request_log_settings(flush_interval_seconds=3600)  # nothing is written before shutdown

    with TestClient(create_sample_app()) as client:
        for _ in range(3):
            client.get("/health")
        assert count_records("/health") == 0

    assert count_records("/health") == 3


def test_records_keep_no_query_string_and_no_credentials(
    keys: Keys, wait_for_records: WaitForRecords
) -> None:
    path = "/jobs/00000000-0000-0000-0000-000000000000"
    secrets = ["ada@example.com", "s3cret-query", "s3cret-cookie", keys.client]
    with TestClient(create_sample_app()) as client:
        client.get(
            f"{path}?email=ada@example.com&token=s3cret-query",
            headers={**keys.auth(keys.client), "Cookie": "session=s3cret-cookie"},
        )
        [record] = wait_for_records(client, path=path, headers=keys.auth(keys.ops))
    with session_scope() as session:
        rows = session.scalars(select(RequestRecord)).all()
        stored = json.dumps([row.__dict__ for row in rows], default=str)

    assert record["path"] == path
    assert record["status"] == 404
    assert [secret for secret in secrets if secret in stored] == []
