"""The service under a real uvicorn process, on PostgreSQL, doing real background work."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.integration.conftest import POSTGRES_URL, Process, wait_for_final, wait_until

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


@contextmanager
def writes_refused(database_url: str) -> Iterator[None]:
    """A spell during which PostgreSQL refuses writes on every connection the service opens."""
    name = make_url(database_url).database
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
        # Open sessions keep what they started with: end them, as a failover would.
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
            {"name": name},
        )
    try:
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" RESET default_transaction_read_only'))
        admin.dispose()


def test_a_spell_of_refused_writes_is_503_and_passes_without_a_restart(
    start_api: Callable[..., tuple[Process, str]], database_url: str
) -> None:
    process, base_url = start_api()

    def health() -> int:
        return httpx.get(f"{base_url}/health", timeout=10).status_code

    with writes_refused(database_url):
        wait_until(lambda: health() == 503, process)
        refused = httpx.post(f"{base_url}/samples/echo", json={"value": "spell"}, timeout=10)
        assert refused.status_code >= 500  # not accepted: nothing was promised

    # Writable again; the service's (and worker's) connections from the spell are replaced.
    wait_until(lambda: health() == 200, process)
    accepted = [
        httpx.post(f"{base_url}/samples/echo", json={"value": str(n)}, timeout=10)
        for n in range(20)
    ]
    assert [response.status_code for response in accepted] == [202] * 20
    for response in accepted:
        assert wait_for_final(base_url, response.json()["job_id"], process)["status"] == "succeeded"
