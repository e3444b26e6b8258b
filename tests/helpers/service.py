"""The richest render of a backend running for real on loopback, for the docs tests."""

import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Combo, project_env, render, richest, sync_project
from tests.helpers.markdown import EXAMPLE_KEYS

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def require_redis() -> None:
    """Skip without Redis, like the integration tier; fail instead under REQUIRE_SERVICES=1."""
    parsed = urllib.parse.urlsplit(REDIS_URL)
    if answers(parsed.hostname or "127.0.0.1", parsed.port or 6379):
        return
    message = f"Redis is not reachable at {parsed.hostname}:{parsed.port}"
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}; REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(message)


class Services:
    """Processes of the rendered service, stopped (and their logs shown) at the end."""

    def __init__(self, project: Path, env: dict[str, str], logs: Path) -> None:
        self.project, self.env, self.logs = project, env, logs
        self.python = str(project / ".venv" / "bin" / "python")
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str) -> None:
        with (self.logs / f"{name}.log").open("wb") as out:
            process = subprocess.Popen(
                [self.python, *args],
                cwd=self.project,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes.append((name, process))

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def wait_until(self, what: str, check: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            for name, process in self.processes:
                if process.poll() is not None:
                    pytest.fail(f"{name} exited early:\n{self.log(name)}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"{what} not ready in {timeout}s\n{self.all_logs()}", pytrace=False)
            time.sleep(0.1)

    def all_logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)[-4000:]}" for name, _ in self.processes)

    def stop(self) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for _, process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def healthy(base_url: str) -> bool:
    result = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{base_url}/health"],
        capture_output=True,
        text=True,
    )
    return result.stdout == "200"


@pytest.fixture
def running_service(
    request: pytest.FixtureRequest, template_snapshot: Path, tmp_path: Path
) -> Iterator[tuple[Path, str, Services]]:
    """The richest render of a backend, running for real on loopback."""
    combo: Combo = richest(request.param)
    celery = combo.answers["task_backend"] == "celery"
    if celery:
        require_redis()
    project = render(template_snapshot, tmp_path / "project", combo.answers)
    sync_project(project)
    (tmp_path / "logs").mkdir()

    unique = uuid.uuid4().hex[:8]
    env = {
        **project_env(project),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",  # logs are read while the processes run
        # As deployed: keys required, /metrics behind an ops key.
        "ENVIRONMENT": "production",
        "API_KEYS": EXAMPLE_KEYS["API_KEY"],
        "OPS_API_KEYS": EXAMPLE_KEYS["OPS_API_KEY"],
        "METRICS_REQUIRE_KEY": "true",
    }
    smtp_port = free_port()
    if "email" in combo.answers["scenarios"]:
        env.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port))
    if "webhooks" in combo.answers["scenarios"]:
        # The README's walk-through registers a receiver on this machine, as it says to.
        env.update(WEBHOOKS_ALLOW_PRIVATE_URLS="true")
    if celery:
        # A queue and cache keys of their own: parallel runs share the Redis.
        env.update(CELERY_BROKER_URL=REDIS_URL, CELERY_QUEUE=f"docs-{unique}")
        env.update(CACHE_URL=REDIS_URL, CACHE_KEY_PREFIX=f"docs-{unique}:")

    services = Services(project, env, tmp_path / "logs")
    try:
        if "email" in combo.answers["scenarios"]:
            services.start("smtp", "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{smtp_port}")
            services.wait_until("SMTP sink", lambda: answers("127.0.0.1", smtp_port))
        if celery:
            services.start(
                "worker",
                *("-m", "celery", "-A", "app.worker", "worker", "--pool", "prefork"),
                *("--concurrency", "1", "--loglevel", "INFO", "--without-gossip"),
                "--without-mingle",
            )
            services.wait_until("celery worker", lambda: "ready." in services.log("worker"))
        port = free_port()
        services.start(
            "api",
            *("-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)),
        )
        base_url = f"http://127.0.0.1:{port}"
        services.wait_until("the API", lambda: healthy(base_url))
        yield project, base_url, services
    finally:
        services.stop()
    shutil.rmtree(project)
