"""`GET /jobs/{job_id}`."""

import uuid
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient


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
