"""Schema migrations on PostgreSQL: no drift, and processes starting together upgrade once."""

import subprocess
import sys
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.integration.conftest import (
    POSTGRES_URL,
    PROJECT_ROOT,
    Process,
    free_port,
    require,
    wait_until,
)

pytestmark = pytest.mark.integration

# With the Celery backend a worker starts beside the APIs: it upgrades at start-up too.
HAS_WORKER = (PROJECT_ROOT / "app" / "worker.py").is_file()
UPGRADED = "database schema upgraded"


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A PostgreSQL database of this test's own, with no table at all."""
    require("PostgreSQL", POSTGRES_URL)
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def alembic(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def healthy(port: int) -> bool:
    response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
    return response.status_code == 200 and response.json()["components"]["schema"] == "ok"


def test_two_apis_and_a_worker_starting_together_on_an_empty_database_upgrade_once(
    empty_database: str, service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**service_env, "DATABASE_URL": empty_database, "MIGRATE_ON_START": "true"}
    ports = [free_port(), free_port()]
    processes = [
        Process(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)],
            env,
            tmp_path / f"api-{port}.log",
        )
        for port in ports
    ]
    if HAS_WORKER:
        worker = [sys.executable, "-m", "celery", "-A", "app.worker", "worker", "--pool", "solo"]
        processes.append(Process(worker, env, tmp_path / "worker.log"))
    try:
        for process in processes:  # together: each is still importing when the next starts
            process.start()
        for port, process in zip(ports, processes, strict=False):
            wait_until(partial(healthy, port), process, timeout=90)
        if HAS_WORKER:
            wait_until(lambda: " ready." in processes[-1].output(), processes[-1], timeout=90)
        outputs = [process.output() for process in processes]
    finally:
        for process in processes:
            process.stop()

    assert sum(output.count(UPGRADED) for output in outputs) == 1, "\n---\n".join(outputs)
    assert all("Traceback" not in output for output in outputs), "\n---\n".join(outputs)
    check = alembic(env, "check")
    assert "No new upgrade operations detected" in check
