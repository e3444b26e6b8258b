"""A generated project checks itself before its tests: ruff and mypy, in CI and on commit."""

import subprocess
from pathlib import Path

import yaml

from tests.conftest import BASE_ANSWERS, project_env, render, richest, sync_project, tool


def test_ci_workflow_lints_and_type_checks_before_the_tests(
    template_snapshot: Path, tmp_path: Path
) -> None:
    project = render(template_snapshot, tmp_path / "project", richest("celery").answers)
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())

    commands = [step["run"] for step in workflow["jobs"]["test"]["steps"] if "run" in step]

    checks = ["uv run ruff check .", "uv run ruff format --check .", "uv run mypy"]
    assert all(check in commands for check in checks), commands
    first_test = commands.index("uv run pytest")
    assert all(commands.index(check) < first_test for check in checks)


def pre_commit(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("pre-commit"), "run", "--all-files", "--color", "never"],
        cwd=project,
        env=project_env(project),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_pre_commit_hooks_pass_on_a_new_project_and_stop_a_type_error(
    template_snapshot: Path, tmp_path: Path
) -> None:
    answers = {**BASE_ANSWERS, "scenarios": [], "include_docker": False, "include_ci": False}
    project = render(template_snapshot, tmp_path / "project", answers)
    sync_project(project)
    git = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)

    clean = pre_commit(project)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    passed = [
        line.split(".", 1)[0] for line in clean.stdout.splitlines() if line.endswith("Passed")
    ]
    assert passed == ["ruff check", "ruff format", "mypy"], clean.stdout

    (project / "app" / "api" / "orders.py").write_text(
        '"""Orders."""\n\nLIMIT: int = "ten"\n'  # formatted and lint-clean, but mistyped
    )
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    mistyped = pre_commit(project)

    assert mistyped.returncode != 0
    assert "app/api/orders.py:3: error: Incompatible types in assignment" in mistyped.stdout
