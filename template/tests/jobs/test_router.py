"""`/jobs`: read one job; list, retry and cancel jobs; the schedule of periodic jobs."""

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.config import get_settings
from app.jobs.service import get_job_store
from app.tasks.runner import run_attempt
from tests.conftest import Keys
from tests.sample_work import create_sample_app

Wait = Callable[..., dict[str, Any]]


def test_unknown_job_is_404(client: TestClient) -> None:
    response = client.get(f"/jobs/{uuid.uuid4()}")

    assert response.status_code == 404
    assert "not found" in response.json()["detail"]


def test_malformed_job_id_is_422(client: TestClient) -> None:
    assert client.get("/jobs/not-a-uuid").status_code == 422


def test_job_json_has_the_documented_fields(client: TestClient) -> None:
    job_id = client.post("/samples/echo", json={"value": "x"}).json()["job_id"]

    job = client.get(f"/jobs/{job_id}").json()

    assert {
        "id",
        "kind",
        "status",
        "attempts",
        "error",
        "result",
        "created_at",
        "updated_at",
    } <= set(job)
    assert job["id"] == job_id


def test_job_timestamps_are_utc_with_their_zone(client: TestClient) -> None:
    before = datetime.now(UTC)
    job_id = client.post("/samples/echo", json={"value": "x"}).json()["job_id"]

    job = client.get(f"/jobs/{job_id}").json()

    created = datetime.fromisoformat(job["created_at"])
    assert created.utcoffset() == timedelta(0)  # "…Z": clients need not guess the zone
    assert before <= created <= datetime.fromisoformat(job["updated_at"])


# --- job operations: GET /jobs, retry, cancel, schedules (ops scope) ---


def enqueue(client: TestClient, name: str, **kwargs: Any) -> str:
    response = client.post(f"/samples/{name}", json=kwargs)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def queued_job() -> uuid.UUID:
    """A job row that no backend was handed (so it stays `queued` for the test)."""
    return asyncio.run(get_job_store().create("samples.echo", {"value": "q"}, None))


def wait_for_status(client: TestClient, job_id: str, wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (status := client.get(f"/jobs/{job_id}").json()["status"]) != wanted:
        assert time.monotonic() < deadline, f"job {job_id} still {status}, not {wanted}"
        time.sleep(0.01)


def test_jobs_are_listed_newest_first_in_disjoint_complete_pages(
    client: TestClient, wait_for_job: Wait
) -> None:
    ids = [enqueue(client, "echo", value=str(n)) for n in range(7)]
    for job_id in ids:
        wait_for_job(job_id)

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3, "kind": "samples.echo"}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/jobs", params=params).json()
        assert len(page["items"]) <= 3
        seen += [job["id"] for job in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == ids[::-1]


def test_jobs_filter_by_repeated_status(client: TestClient, wait_for_job: Wait) -> None:
    failed = wait_for_job(enqueue(client, "permanent"))["id"]
    succeeded = wait_for_job(enqueue(client, "echo", value="x"))["id"]
    queued = str(queued_job())

    listed = client.get("/jobs", params=[("status", "failed"), ("status", "queued")]).json()

    ids = {job["id"] for job in listed["items"]}
    assert {failed, queued} <= ids
    assert succeeded not in ids


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"status": "paused"}, "status"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"created_after": "2026-01-01T00:00:00"}, "time zone"),
    ],
)
def test_bad_list_parameters_are_422_with_a_message(
    client: TestClient, params: dict[str, Any], message: str
) -> None:
    response = client.get("/jobs", params=params)

    assert response.status_code == 422
    assert message in response.text


def test_job_operations_need_an_ops_key(keys: Keys) -> None:
    with TestClient(create_sample_app()) as client:
        job_id = queued_job()
        as_client = Keys.auth(keys.client)
        as_ops = Keys.auth(keys.ops)

        assert client.get("/jobs", headers=as_client).status_code == 403
        assert client.post(f"/jobs/{job_id}/cancel", headers=as_client).status_code == 403
        assert client.post(f"/jobs/{job_id}/retry", headers=as_client).status_code == 403
        assert client.get("/jobs/schedules", headers=as_client).status_code == 403
        assert client.get(f"/jobs/{job_id}", headers=as_client).status_code == 200
        assert client.get("/jobs", headers=as_ops).status_code == 200


def test_failed_job_retried_runs_again_under_its_id_keeping_its_attempts(
    client: TestClient, wait_for_job: Wait, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "job_max_attempts", 2)
    failed = wait_for_job(enqueue(client, "flaky", failures=2))
    assert (failed["status"], failed["attempts"]) == ("failed", 2)

    response = client.post(f"/jobs/{failed['id']}/retry")
    job = wait_for_job(failed["id"])

    assert response.status_code == 202
    assert response.json()["id"] == failed["id"]
    assert (job["status"], job["attempts"], job["result"]) == ("succeeded", 3, 3)


@pytest.mark.parametrize("status", ["succeeded", "queued"])
def test_retry_of_a_job_that_did_not_fail_is_409(
    client: TestClient, wait_for_job: Wait, status: str
) -> None:
    job_id = (
        wait_for_job(enqueue(client, "echo", value="x"))["id"]
        if status == "succeeded"
        else str(queued_job())
    )

    response = client.post(f"/jobs/{job_id}/retry")

    assert response.status_code == 409
    assert f"is {status}" in response.json()["detail"]


def test_retry_of_a_job_whose_unit_was_removed_is_409_naming_it(client: TestClient) -> None:
    job_id = asyncio.run(get_job_store().create("gone.unit", {}, None))
    asyncio.run(get_job_store().fail(job_id, "no unit"))

    response = client.post(f"/jobs/{job_id}/retry")

    assert response.status_code == 409
    assert "'gone.unit'" in response.json()["detail"]


def test_unknown_job_operations_are_404(client: TestClient) -> None:
    assert client.post(f"/jobs/{uuid.uuid4()}/retry").status_code == 404
    assert client.post(f"/jobs/{uuid.uuid4()}/cancel").status_code == 404


def test_cancelled_queued_job_never_runs(client: TestClient) -> None:
    job_id = queued_job()

    response = client.post(f"/jobs/{job_id}/cancel")
    # The backend gets the job anyway (a message already on its way): the runner refuses it.
    outcome = asyncio.run(run_attempt("samples.echo", job_id, {"value": "q"}, None))

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert outcome.status == "cancelled"
    job = client.get(f"/jobs/{job_id}").json()
    assert (job["status"], job["attempts"], job["result"]) == ("cancelled", 0, None)


def test_cancelled_job_can_be_retried(client: TestClient, wait_for_job: Wait) -> None:
    job_id = queued_job()
    client.post(f"/jobs/{job_id}/cancel")

    assert client.post(f"/jobs/{job_id}/retry").status_code == 202
    assert wait_for_job(str(job_id))["status"] == "succeeded"


def test_running_job_of_a_cancellable_unit_stops_and_ends_cancelled(
    client: TestClient, wait_for_job: Wait
) -> None:
    job_id = enqueue(client, "cancellable", seconds=20)
    wait_for_status(client, job_id, "running")

    response = client.post(f"/jobs/{job_id}/cancel")
    job = wait_for_job(job_id, timeout=5)  # well before its 20 s of work

    assert response.status_code == 200
    assert job["status"] == "cancelled"


def test_running_job_of_a_unit_that_is_not_cancellable_is_409(
    client: TestClient, wait_for_job: Wait
) -> None:
    job_id = enqueue(client, "sleep", seconds=1)
    wait_for_status(client, job_id, "running")

    response = client.post(f"/jobs/{job_id}/cancel")

    assert response.status_code == 409
    assert "not cancellable" in response.json()["detail"]
    assert wait_for_job(job_id)["status"] == "succeeded"


def test_finished_job_cannot_be_cancelled(client: TestClient, wait_for_job: Wait) -> None:
    job_id = wait_for_job(enqueue(client, "echo", value="x"))["id"]

    response = client.post(f"/jobs/{job_id}/cancel")

    assert response.status_code == 409
    assert "is succeeded" in response.json()["detail"]


def test_schedules_list_what_runs_periodically(client: TestClient) -> None:
    items = {item["kind"]: item for item in client.get("/jobs/schedules").json()["items"]}

    assert items["jobs.retention"]["schedule"] == "every 1:00:00"
    assert items["samples.tick"]["schedule"].startswith("every")
