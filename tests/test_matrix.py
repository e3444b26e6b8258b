"""Every combination of answers renders clean, lints and type-checks clean, imports every
module it ships and passes its own test suite."""

import fcntl
import hashlib
import json
import os
import re
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import (
    QUESTIONS,
    Combo,
    all_combos,
    choice_values,
    matrix_axes,
    project_tool,
    render,
    run,
    sync_project,
    tool,
)

# Combinations differing only in the optional Docker/CI files sit far apart, so the first
# of them has passed its tests (see `passed_trees`) by the time the others come.
COMBOS = sorted(all_combos(), key=lambda c: (c.answers["include_docker"], c.answers["include_ci"]))
JINJA_LEFTOVER = re.compile(r"\{\{|\{%|\{#")


def test_matrix_covers_every_asked_choice_question() -> None:
    axes = matrix_axes()
    scenarios = choice_values(QUESTIONS["scenarios"])
    backends = choice_values(QUESTIONS["task_backend"])
    bools = [name for name, q in QUESTIONS.items() if q.get("type") == "bool"]

    assert set(axes) == {"scenarios", "task_backend", *bools}
    assert len(COMBOS) == 2 ** len(scenarios) * len(backends) * 2 ** len(bools)
    assert len({combo.id for combo in COMBOS}) == len(COMBOS)


def check_no_jinja_left(project: Path) -> None:
    for path in project.rglob("*"):
        if ".venv" in path.parts:
            continue
        relative = path.relative_to(project)
        assert not JINJA_LEFTOVER.search(str(relative)), f"unrendered Jinja in path {relative}"
        assert not path.name.endswith(".jinja"), f"template suffix left on {relative}"
        # Files under a `templates/` folder are the service's own Jinja2 templates (e.g. email
        # bodies), copied verbatim for it to render at run time: their tags are meant to stay.
        if path.is_file() and "templates" not in relative.parts:
            text = path.read_text(errors="replace")
            match = JINJA_LEFTOVER.search(text)
            assert not match, (
                f"unrendered Jinja in {relative}: {text[match.start() - 40 : match.end() + 40]!r}"
            )


def check_config_files(project: Path, combo: Combo) -> None:
    compose = project / "compose.yaml"
    workflow = project / ".github" / "workflows" / "ci.yml"
    assert compose.exists() == combo.answers["include_docker"]
    assert (project / "Dockerfile").exists() == combo.answers["include_docker"]
    assert workflow.exists() == combo.answers["include_ci"]
    if compose.exists():
        run(
            [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)],
            project,
        )
        # Syntax and Docker's best practices (a numeric non-root user, exec-form CMD, …).
        run([tool("hadolint"), "--no-color", "Dockerfile"], project)
    if workflow.exists():
        run(
            [
                tool("check-jsonschema"),
                "--builtin-schema",
                "vendor.github-workflows",
                str(workflow),
            ],
            project,
        )


def check_slug_cannot_shadow_an_installed_package(project: Path) -> None:
    """copier.yml refuses a slug naming any package a render installs: keep its list whole."""
    lock = tomllib.loads((project / "uv.lock").read_text())
    own_name = tomllib.loads((project / "pyproject.toml").read_text())["project"]["name"]
    installed = {package["name"] for package in lock["package"]} - {own_name}
    missing = installed - set(yaml.safe_load(QUESTIONS["dependency_names"]["default"]))
    assert not missing, f"add to dependency_names in copier.yml: {', '.join(sorted(missing))}"


# Imports every module of the given packages in one interpreter, in name order, and prints
# the names as JSON; exits non-zero naming each module that failed and why.
IMPORT_EVERY_MODULE = """
import importlib, json, pkgutil, sys, traceback
names, failed = [], []
for package in sys.argv[1:]:
    root = importlib.import_module(package)
    names.append(package)
    names += [m.name for m in pkgutil.walk_packages(root.__path__, package + ".")]
for name in sorted(names):
    try:
        importlib.import_module(name)
    except BaseException:
        failed.append(name + ": " + traceback.format_exc(limit=-1).strip())
print(json.dumps(names))
sys.exit("\\n".join(failed) or None)
"""
SHIPPED_PACKAGES = ("app", "bench")
ALEMBIC_ENV = Path("app/core/alembic/env.py")


def check_migrations(project: Path, tmp_path: Path) -> None:
    """`alembic upgrade heads` builds this combination's schema; `alembic check` finds no drift."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'schema.db'}"}
    project_tool(project, "alembic", "upgrade", "heads", env=env)
    output = project_tool(project, "alembic", "check", env=env)
    assert "No new upgrade operations detected" in output, output


def check_every_module_imports(project: Path) -> None:
    """Each module of the service and its benchmarks imports on this combination's backend."""
    output = project_tool(project, "python", "-c", IMPORT_EVERY_MODULE, *SHIPPED_PACKAGES)
    imported = set(json.loads(output.splitlines()[-1]))
    on_disk = {
        ".".join(path.relative_to(project).with_suffix("").parts).removesuffix(".__init__")
        for package in SHIPPED_PACKAGES
        for path in (project / package).rglob("*.py")
        # Alembic runs env.py itself, with its context set up; it is no module to import.
        if path.relative_to(project) != ALEMBIC_ENV
    }
    assert imported == on_disk, f"not imported: {on_disk - imported}"


# Files neither ruff nor a test run reads: combinations that differ only in them are checked once.
NOT_READ_BY_TESTS = {
    "Dockerfile",
    ".dockerignore",
    "compose.yaml",
    ".github",
    ".copier-answers.yml",
}


def fingerprint_of_tested_tree(project: Path) -> str:
    """A hash of every file the project's own test run can read."""
    digest = hashlib.sha256()
    for path in sorted(project.rglob("*")):
        relative = path.relative_to(project)
        if path.is_file() and not NOT_READ_BY_TESTS & {relative.parts[0]} and path.suffix != ".md":
            digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@pytest.fixture(scope="session")
def passed_trees(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fingerprints of trees whose tests passed, shared by the xdist workers of this run."""
    basetemp = tmp_path_factory.getbasetemp()
    # Under xdist each worker's basetemp sits in this run's own directory; never look
    # further up, where markers of earlier runs would be.
    run_dir = basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp
    shared = run_dir / "passed-trees"
    shared.mkdir(exist_ok=True)
    return shared


@pytest.mark.parametrize("combo", COMBOS, ids=lambda combo: combo.id)
def test_combination_renders_lints_type_checks_and_passes_its_tests(
    combo: Combo, template_snapshot: Path, tmp_path: Path, passed_trees: Path
) -> None:
    project = render(template_snapshot, tmp_path / "project", combo.answers)
    fingerprint = fingerprint_of_tested_tree(project)  # as rendered, before any tool runs

    check_no_jinja_left(project)
    check_config_files(project, combo)
    # Docker and CI files change nothing ruff or the tests read: an identical tree already
    # linted and passed in this run (the same answers without Docker) needn't be again.
    marker = passed_trees / fingerprint
    failed = marker.with_suffix(".failed")
    # A twin in flight on another xdist worker holds the lock: wait for its verdict rather
    # than run the same two minutes of checks beside it.
    with marker.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            # Its failure is reported once, under the combination that ran it: running the
            # same tree again would cost minutes and say nothing new.
            pytest.fail(f"the same tree as {failed.read_text()}, which failed in this run")
        if not marker.exists():
            try:
                sync_project(project)
                check_slug_cannot_shadow_an_installed_package(project)
                project_tool(project, "ruff", "check", ".")
                project_tool(project, "ruff", "format", "--check", ".")
                project_tool(project, "mypy")  # with this worker's cache (shared_mypy_cache)
                check_every_module_imports(project)
                check_migrations(project, tmp_path)
                project_tool(project, "pytest", "-q", "-p", "no:cacheprovider")
            except BaseException:
                failed.write_text(combo.id)
                raise
            marker.write_text(combo.id)

    shutil.rmtree(project)  # passing renders are not worth their disk space
