"""Units of work run through the chosen backend and their jobs record what happened."""

import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.config import get_settings
from app.core.logging import ContextFilter, JsonFormatter
from app.tasks import RUNS_IN_API_PROCESS
from app.tasks.interface import backoff_seconds

Wait = Callable[..., dict[str, Any]]


def enqueue(client: TestClient, name: str, **kwargs: Any) -> dict[str, Any]:
    response = client.post(f"/samples/{name}", json=kwargs)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


def test_job_goes_queued_running_succeeded(client: TestClient, wait_for_job: Wait) -> None:
    accepted = enqueue(client, "echo", value="hello")
    # The row exists before the work starts. BackgroundTasks start after the response, so
    # the endpoint always sees it queued; a Celery worker may already have picked it up.
    seen = {"queued"} if RUNS_IN_API_PROCESS else {"queued", "running", "succeeded"}
    assert accepted["status_at_enqueue"] in seen

    job = wait_for_job(accepted["job_id"])

    assert job["status"] == "succeeded"
    assert job["result"] == {"echo": "hello", "status_while_running": "running"}
    assert job["attempts"] == 1
    assert job["kind"] == "samples.echo"
    assert job["error"] is None


def test_transient_failure_is_retried_until_it_succeeds(
    client: TestClient, wait_for_job: Wait
) -> None:
    job = wait_for_job(enqueue(client, "flaky", failures=1)["job_id"])

    assert job["status"] == "succeeded"
    assert job["attempts"] == 2
    assert job["result"] == 2


def test_job_failing_every_attempt_ends_failed_with_error_and_attempts(
    client: TestClient, wait_for_job: Wait, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "job_max_attempts", 3)  # whatever the default is
    started = time.monotonic()
    job = wait_for_job(enqueue(client, "flaky", failures=99)["job_id"])
    elapsed = time.monotonic() - started

    assert job["status"] == "failed"
    assert job["attempts"] == 3
    assert "ConnectionError: transient failure on attempt 3" in job["error"]
    # Backoff waited at least half of each exponential step (0.01 s, then 0.02 s).
    assert elapsed >= 0.03


def test_permanent_error_fails_at_once(client: TestClient, wait_for_job: Wait) -> None:
    job = wait_for_job(enqueue(client, "permanent")["job_id"])

    assert job["status"] == "failed"
    assert job["attempts"] == 1
    assert "this input can never succeed" in job["error"]


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling() -> None:
    settings = get_settings()
    for attempt in range(1, 8):
        step = min(
            settings.job_retry_max_seconds,
            settings.job_retry_base_seconds * 2 ** (attempt - 1),
        )
        delays = {backoff_seconds(attempt) for _ in range(50)}
        assert all(step / 2 <= delay <= step for delay in delays)
        assert len(delays) > 1  # jittered, so retries of many jobs spread out


def test_work_enqueued_before_the_endpoint_raised_still_runs(
    client: TestClient, wait_for_job: Wait
) -> None:
    response = client.post("/samples/echo/then-fail", json={"value": "owed"})
    assert response.status_code == 409

    job = wait_for_job(response.json()["detail"]["job_id"])

    assert job["status"] == "succeeded"
    assert job["result"]["echo"] == "owed"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Capture log lines exactly as the service's JSON handler writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


def test_job_log_lines_carry_the_request_id_and_job_id(
    client: TestClient, wait_for_job: Wait, json_log: io.StringIO
) -> None:
    response = client.post(
        "/samples/echo", json={"value": "traced"}, headers={"X-Request-ID": "req-42"}
    )
    job_id = response.json()["job_id"]
    wait_for_job(job_id)

    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    inside = [line for line in lines if line["message"] == "echoing traced"]
    assert len(inside) == 1
    assert inside[0]["request_id"] == "req-42"
    assert inside[0]["job_id"] == job_id
    assert wait_for_job(job_id)["request_id"] == "req-42"


def test_metrics_count_jobs_by_kind_and_status(client: TestClient, wait_for_job: Wait) -> None:
    wait_for_job(enqueue(client, "permanent")["job_id"])

    body = client.get("/metrics").text

    assert 'jobs_total{kind="samples.permanent",status="failed"}' in body
    assert 'job_duration_seconds_count{kind="samples.permanent"}' in body
