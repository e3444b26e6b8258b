"""Shared helpers: the answer matrix read from copier.yml, and rendering with Copier."""

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from copier import run_copy

ROOT = Path(__file__).resolve().parents[1]
COPIER_YML = ROOT / "copier.yml"
QUESTIONS: dict[str, Any] = {
    key: value
    for key, value in yaml.safe_load(COPIER_YML.read_text()).items()
    if not key.startswith("_")
}
# Fixtures that live beside the helpers they use.
pytest_plugins = ["tests.helpers.service", "tests.helpers.update"]

BASE_ANSWERS = {
    "project_name": "Matrix Service",
    "author_name": "Test Author",
    "author_email": "author@example.com",
}


def choice_values(question: dict[str, Any]) -> list[Any]:
    choices = question.get("choices") or []
    return list(choices.values()) if isinstance(choices, dict) else list(choices)


def matrix_axes() -> dict[str, list[Any]]:
    """Every asked question that takes one of a few values, with all the values it can take."""
    axes: dict[str, list[Any]] = {}
    for name, question in QUESTIONS.items():
        if question.get("when") is False:
            continue  # derived, never asked
        if question.get("multiselect"):
            values = choice_values(question)
            axes[name] = [
                list(subset)
                for size in range(len(values) + 1)
                for subset in itertools.combinations(values, size)
            ]
        elif "choices" in question:
            axes[name] = choice_values(question)
        elif question.get("type") == "bool":
            axes[name] = [True, False]
    return axes


@dataclass(frozen=True)
class Combo:
    answers: dict[str, Any]

    @property
    def id(self) -> str:
        a = self.answers
        scenarios = "+".join(a["scenarios"]) or "none"
        extras = [name for name in ("include_docker", "include_ci") if a.get(name)]
        return "-".join([a["task_backend"], scenarios, *[e.split("_")[1] for e in extras]])


def all_combos() -> list[Combo]:
    axes = matrix_axes()
    return [
        Combo({**BASE_ANSWERS, **dict(zip(axes, values, strict=True))})
        for values in itertools.product(*axes.values())
    ]


def richest(backend: str) -> Combo:
    """Every scenario, every optional file, on `backend`."""
    axes = matrix_axes()
    return Combo(
        {
            **BASE_ANSWERS,
            **{name: values[0] for name, values in axes.items()},
            "scenarios": max(axes["scenarios"], key=len),
            "task_backend": backend,
            "include_docker": True,
            "include_ci": True,
        }
    )


@pytest.fixture(scope="session")
def template_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working tree's template without git, so renders are fast and include local edits."""
    snapshot = tmp_path_factory.mktemp("template")
    shutil.copy2(COPIER_YML, snapshot / "copier.yml")
    shutil.copytree(
        ROOT / "template",
        snapshot / "template",
        ignore=shutil.ignore_patterns("__pycache__", ".ruff_cache", ".pytest_cache"),
    )
    return snapshot


@pytest.fixture(scope="session", autouse=True)
def shared_mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One mypy cache for every generated project this xdist worker type-checks.

    Projects share most modules (the dependencies, the core), and mypy trusts a cached
    module only while its source hashes the same, wherever the project lies: each project
    after the first rechecks what differs (5 s instead of 20 s). One cache per worker,
    since two mypy runs must not write one cache at once.
    """
    cache = tmp_path_factory.mktemp("mypy-cache")
    before = os.environ.get("MYPY_CACHE_DIR")
    os.environ["MYPY_CACHE_DIR"] = str(cache)  # project_env passes it on
    yield cache
    if before is None:
        del os.environ["MYPY_CACHE_DIR"]
    else:
        os.environ["MYPY_CACHE_DIR"] = before


def render(template: Path, destination: Path, answers: dict[str, Any]) -> Path:
    run_copy(
        str(template),
        str(destination),
        data=answers,
        defaults=True,
        overwrite=True,
        quiet=True,
        unsafe=False,
    )
    return destination


def tool(name: str) -> str:
    """A command installed beside this interpreter (the dev venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name) or name


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    """Run a command; on failure, fail the test with its whole output."""
    result = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        pytest.fail(
            f"`{' '.join(args)}` exited {result.returncode} in {cwd}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
            pytrace=False,
        )
    return result.stdout


def project_env(project: Path) -> dict[str, str]:
    """Run the generated project's own tools from its own environment, not ours."""
    # PYTHONDONTWRITEBYTECODE (set on the CI machines) would make every process of a fresh
    # environment compile what it imports from source: 5 s instead of 2 to import the app,
    # paid by each of the dozens of processes a project's own tests start.
    dropped = {"VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE"}
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env["UV_PROJECT_ENVIRONMENT"] = str(project / ".venv")
    return env


def sync_project(project: Path) -> None:
    """An environment with exactly what the generated pyproject.toml asks for, no more."""
    run([tool("uv"), "sync", "--quiet"], project, project_env(project))


def project_tool(project: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return run(
        [tool("uv"), "run", "--no-sync", *args], project, {**project_env(project), **(env or {})}
    )
