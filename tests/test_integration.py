"""The richest combination of each backend, against real services: its integration tier and
its benchmark (in smoke mode: a run of a second or two, so the script cannot rot)."""

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from tests.conftest import QUESTIONS, choice_values, project_tool, render, richest, sync_project

BACKENDS = choice_values(QUESTIONS["task_backend"])


@pytest.fixture(params=BACKENDS)
def richest_project(request: pytest.FixtureRequest, template_snapshot: Path, tmp_path: Path):
    project = render(template_snapshot, tmp_path / "project", richest(request.param).answers)
    sync_project(project)
    yield request.param, project
    shutil.rmtree(project)


def require_redis() -> None:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError as exc:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis is not reachable on 127.0.0.1:6379 ({exc})", pytrace=False)
        pytest.skip(f"Redis is not reachable on 127.0.0.1:6379 ({exc})")


def test_richest_combination_passes_its_integration_tier(richest_project) -> None:
    _, project = richest_project

    output = project_tool(
        project,
        "pytest",
        "-m",
        "integration",
        "-p",
        "no:cacheprovider",
        "-rs",
        env={"REQUIRE_SERVICES": os.environ.get("REQUIRE_SERVICES", "0")},
    )

    assert " passed" in output


def test_benchmark_runs_and_loses_no_job(richest_project) -> None:
    backend, project = richest_project
    if backend == "celery":
        require_redis()

    output = project_tool(project, "python", "-m", "bench", "--smoke")

    result = json.loads(output.strip().splitlines()[-1])  # the last line is one JSON object
    assert result["backend"] == backend
    assert result["submitted"] > 0
    assert result["succeeded"] == result["submitted"]
    assert result["lost"] == 0
    measured = ("bare_rps", "enqueue_rps", "ratio", "jobs_per_s", "loadgen_ceiling_rps")
    against_naive = ("naive_bare_rps", "naive_rps", "vs_naive", "bare_vs_naive_bare")
    for key in (*measured, *against_naive):
        assert result[key] > 0
    if backend == "celery":
        assert result["wrapped_jobs_per_s"] > 0
        assert result["raw_celery_tasks_per_s"] > 0
