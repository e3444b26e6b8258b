"""Job operations against the deployed service on PostgreSQL: list, retry, cancel."""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Process, job_status, wait_for_final, wait_until

pytestmark = pytest.mark.integration

StartApi = Callable[..., tuple[Process, str]]


def enqueue(base_url: str, name: str, **kwargs: Any) -> str:
    response = httpx.post(f"{base_url}/samples/{name}", json=kwargs, timeout=5)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def test_many_jobs_list_in_disjoint_complete_pages(start_api: StartApi) -> None:
    process, base_url = start_api()
    ids = [enqueue(base_url, "echo", value=str(n)) for n in range(60)]
    for job_id in ids:
        wait_for_final(base_url, job_id, process)

    # The session's database also holds other tests' echo jobs: list this test's only.
    first = datetime.fromisoformat(job_status(base_url, ids[0])["created_at"])
    since = (first - timedelta(microseconds=1)).isoformat()
    seen: list[str] = []
    params: dict[str, Any] = {
        "kind": "samples.echo",
        "status": "succeeded",
        "created_after": since,
        "limit": 7,
    }
    while True:
        page = httpx.get(f"{base_url}/jobs", params=params, timeout=5).json()
        seen += [job["id"] for job in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]

    assert len(seen) == len(set(seen)) == 60
    assert set(seen) == set(ids)


def test_failed_job_retried_after_the_cause_is_gone_succeeds(start_api: StartApi) -> None:
    process, base_url = start_api(JOB_MAX_ATTEMPTS="2")
    failed = wait_for_final(base_url, enqueue(base_url, "flaky", failures=2), process)
    assert (failed["status"], failed["attempts"]) == ("failed", 2)

    response = httpx.post(f"{base_url}/jobs/{failed['id']}/retry", timeout=5)
    job = wait_for_final(base_url, failed["id"], process)

    assert response.status_code == 202
    assert (job["status"], job["attempts"], job["result"]) == ("succeeded", 3, 3)


def test_running_cancellable_job_is_cancelled_cooperatively(start_api: StartApi) -> None:
    process, base_url = start_api()
    job_id = enqueue(base_url, "cancellable", seconds=30)
    wait_until(lambda: job_status(base_url, job_id)["status"] == "running", process)

    response = httpx.post(f"{base_url}/jobs/{job_id}/cancel", timeout=5)
    job = wait_for_final(base_url, job_id, process, timeout=10)

    assert response.status_code == 200
    assert job["status"] == "cancelled"
    # It stays cancelled: the work stopped instead of finishing and overwriting the row.
    assert job_status(base_url, job_id)["result"] is None
