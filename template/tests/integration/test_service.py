"""The service under a real uvicorn process, on PostgreSQL, doing real background work."""

from collections.abc import Callable

import httpx
import pytest

from tests.integration.conftest import Process, wait_for_final

pytestmark = pytest.mark.integration


def test_enqueued_work_completes_and_is_recorded_in_postgres(
    start_api: Callable[..., tuple[Process, str]],
) -> None:
    process, base_url = start_api()

    health = httpx.get(f"{base_url}/health", timeout=5).json()
    accepted = httpx.post(f"{base_url}/samples/echo", json={"value": "pg"}, timeout=5)
    job = wait_for_final(base_url, accepted.json()["job_id"], process)

    assert health["status"] == "ok"
    assert accepted.status_code == 202
    assert job["status"] == "succeeded"
    assert job["result"]["echo"] == "pg"


def test_failing_work_is_retried_and_recorded(
    start_api: Callable[..., tuple[Process, str]],
) -> None:
    process, base_url = start_api(JOB_MAX_ATTEMPTS="3")  # whatever the default is

    accepted = httpx.post(f"{base_url}/samples/flaky", json={"failures": 99}, timeout=5)
    job = wait_for_final(base_url, accepted.json()["job_id"], process)

    assert job["status"] == "failed"
    assert job["attempts"] == 3
    assert "transient failure on attempt 3" in job["error"]
