"""Every combination of answers renders clean, lints and type-checks clean, imports every
module it ships and builds its schema; the generated test suites run on the fewest trees in
which every three answers that shape the service meet."""

import fcntl
import hashlib
import itertools
import json
import os
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import (
    BASE_ANSWERS,
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
# of them has been checked (see `checked_trees`) by the time the others come.
COMBOS = sorted(all_combos(), key=lambda c: (c.answers["include_docker"], c.answers["include_ci"]))
# Questions that only add files no test or checker reads (see NOT_READ_BY_TESTS).
FILES_ONLY_QUESTIONS = ("include_docker", "include_ci")
# Every choice of this many answers meets in some tree whose own test suite runs.
INTERACTION_STRENGTH = 3


def service_factors() -> dict[str, list[Any]]:
    """What shapes the service a suite tests: each scenario (in or out) and the other choices."""
    axes = matrix_axes()
    factors: dict[str, list[Any]] = {
        f"scenario:{name}": [False, True] for name in choice_values(QUESTIONS["scenarios"])
    }
    factors.update(
        (name, values)
        for name, values in axes.items()
        if name != "scenarios" and name not in FILES_ONLY_QUESTIONS
    )
    return factors


def as_combo(row: dict[str, Any]) -> Combo:
    scenarios = [name for name in choice_values(QUESTIONS["scenarios"]) if row[f"scenario:{name}"]]
    others = {name: value for name, value in row.items() if not name.startswith("scenario:")}
    files = dict.fromkeys(FILES_ONLY_QUESTIONS, False)
    return Combo({**BASE_ANSWERS, **others, **files, "scenarios": scenarios})


def interactions(row: dict[str, Any], strength: int) -> set[tuple[tuple[str, Any], ...]]:
    return {
        tuple((name, row[name]) for name in names)
        for names in itertools.combinations(row, strength)
    }


def suite_trees(strength: int = INTERACTION_STRENGTH) -> list[Combo]:
    """A covering array, built greedily: each backend with no scenario and with all of them,
    then, until every `strength` answers have met, the tree that brings most of them together.

    Every tree is rendered, linted, type-checked, imported and migrated; running each tree's
    whole suite would cost an hour as scenarios double the trees. Faults between features
    come from two or three of them meeting (webhooks and the scenario announcing an event,
    on one backend), and those all meet in these trees.
    """
    factors = service_factors()
    rows = [
        dict(zip(factors, values, strict=True)) for values in itertools.product(*factors.values())
    ]
    scenario_keys = [name for name in factors if name.startswith("scenario:")]
    chosen = [
        row
        for row in rows
        if len({row[name] for name in scenario_keys}) == 1  # none of them, or all of them
    ]
    uncovered = set().union(*(interactions(row, strength) for row in rows))
    for row in chosen:
        uncovered -= interactions(row, strength)
    while uncovered:
        best = max(rows, key=lambda row: len(interactions(row, strength) & uncovered))
        chosen.append(best)
        uncovered -= interactions(best, strength)
    return [as_combo(row) for row in chosen]


SUITE_TREES = suite_trees()


def test_matrix_covers_every_asked_choice_question() -> None:
    axes = matrix_axes()
    scenarios = choice_values(QUESTIONS["scenarios"])
    backends = choice_values(QUESTIONS["task_backend"])
    bools = [name for name, q in QUESTIONS.items() if q.get("type") == "bool"]

    assert set(axes) == {"scenarios", "task_backend", *bools}
    assert len(COMBOS) == 2 ** len(scenarios) * len(backends) * 2 ** len(bools)
    assert len({combo.id for combo in COMBOS}) == len(COMBOS)


def test_suites_run_where_every_three_answers_meet() -> None:
    scenarios = choice_values(QUESTIONS["scenarios"])
    tested = {(c.answers["task_backend"], tuple(c.answers["scenarios"])) for c in SUITE_TREES}

    for backend in choice_values(QUESTIONS["task_backend"]):
        assert (backend, ()) in tested and (backend, tuple(scenarios)) in tested
    # Each scenario beside or without each other one, on each backend; and so on for any three.
    for (a, b), backend, (in_a, in_b) in itertools.product(
        itertools.combinations(scenarios, 2),
        choice_values(QUESTIONS["task_backend"]),
        itertools.product([False, True], repeat=2),
    ):
        assert any(
            t_backend == backend and (a in t_scenarios) == in_a and (b in t_scenarios) == in_b
            for t_backend, t_scenarios in tested
        ), (a, in_a, b, in_b, backend)
    assert len(tested) < len(
        {(c.answers["task_backend"], tuple(c.answers["scenarios"])) for c in COMBOS}
    )


JINJA_LEFTOVER = re.compile(r"\{\{|\{%|\{#")


def rendered_paths(project: Path) -> list[Path]:
    """Every file and folder of the render, sorted; not the environment beside them."""
    paths: list[Path] = []
    for root, folders, files in os.walk(project):
        if root == str(project) and ".venv" in folders:
            folders.remove(".venv")
        paths += [Path(root, name) for name in folders + files]
    return sorted(paths)


def check_no_jinja_left(project: Path) -> None:
    for path in rendered_paths(project):
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


# Runs in the project's interpreter. First `alembic upgrade heads` and `alembic check` (the
# schema the models declare), before anything else is imported, so a model env.py forgets
# shows as drift; then an import of every module of the given packages, in name order.
# Prints the names as JSON; exits non-zero naming each module that failed and why. One
# interpreter for both: each start of the app's interpreter costs 1.5 s.
MIGRATE_AND_IMPORT_EVERY_MODULE = """
import importlib, json, pkgutil, sys, traceback
from alembic import command
from alembic.config import Config
config = Config(toml_file="pyproject.toml")
command.upgrade(config, "heads")
command.check(config)  # raises AutogenerateDiffsDetected, naming the drift
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


def check_migrations_and_imports(project: Path, tmp_path: Path) -> None:
    """This combination's schema builds and matches its models; each module of the service
    and its benchmarks imports on this combination's backend."""
    output = project_tool(
        project,
        "python",
        "-c",
        MIGRATE_AND_IMPORT_EVERY_MODULE,
        *SHIPPED_PACKAGES,
        env={"DATABASE_URL": f"sqlite:///{tmp_path / 'schema.db'}"},
    )
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
    for path in rendered_paths(project):
        relative = path.relative_to(project)
        if path.is_file() and not NOT_READ_BY_TESTS & {relative.parts[0]} and path.suffix != ".md":
            digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@pytest.fixture(scope="session")
def checked_trees(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fingerprints of trees already checked, shared by the xdist workers of this run."""
    basetemp = tmp_path_factory.getbasetemp()
    # Under xdist each worker's basetemp sits in this run's own directory; never look
    # further up, where markers of earlier runs would be.
    run_dir = basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp
    shared = run_dir / "checked-trees"
    shared.mkdir(exist_ok=True)
    return shared


@pytest.fixture(scope="session")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this xdist worker renders its trees, one after the other (see `render_at`)."""
    return tmp_path_factory.mktemp("trees") / "project"


def render_at(place: Path, template: Path, answers: dict[str, Any]) -> Path:
    """A new render at `place`, given the environment the previous tree there synced.

    `uv sync` then adds and removes only the packages that differ (it removes any the
    pyproject.toml does not ask for, so a missing dependency still fails), and the byte-code
    the previous tree's processes compiled for the packages stays valid at the same path:
    in a fresh environment every process of every tree compiled its dependencies again
    (4 s each, for a check that imports the app).
    """
    previous = place.with_name("environment-of-the-previous-tree")
    if (place / ".venv").is_dir():
        (place / ".venv").rename(previous)
    shutil.rmtree(place, ignore_errors=True)
    render(template, place, answers)
    if previous.is_dir():
        previous.rename(place / ".venv")
    return place


@pytest.mark.parametrize("combo", SUITE_TREES, ids=lambda combo: combo.id)
def test_combination_passes_its_own_tests(
    combo: Combo, template_snapshot: Path, place: Path
) -> None:
    project = render_at(place, template_snapshot, combo.answers)
    sync_project(project)
    project_tool(project, "pytest", "-q", "-p", "no:cacheprovider")


@pytest.mark.parametrize("combo", COMBOS, ids=lambda combo: combo.id)
def test_combination_renders_lints_type_checks_imports_and_migrates(
    combo: Combo, template_snapshot: Path, tmp_path: Path, checked_trees: Path, place: Path
) -> None:
    project = render_at(place, template_snapshot, combo.answers)
    fingerprint = fingerprint_of_tested_tree(project)  # as rendered, before any tool runs

    check_no_jinja_left(project)
    check_config_files(project, combo)
    # Docker and CI files change nothing ruff or the checks read: an identical tree already
    # checked in this run (the same answers without Docker) needn't be again.
    marker = checked_trees / fingerprint
    failed = marker.with_suffix(".failed")
    # A twin in flight on another xdist worker holds the lock: wait for its verdict rather
    # than run the same checks beside it.
    with marker.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            # Its failure is reported once, under the combination that ran it: checking the
            # same tree again would cost time and say nothing new.
            pytest.fail(f"the same tree as {failed.read_text()}, which failed in this run")
        if not marker.exists():
            try:
                sync_project(project)
                check_slug_cannot_shadow_an_installed_package(project)
                project_tool(project, "ruff", "check", ".")
                project_tool(project, "ruff", "format", "--check", ".")
                project_tool(project, "mypy")  # with this worker's cache (shared_mypy_cache)
                check_migrations_and_imports(project, tmp_path)
            except BaseException:
                failed.write_text(combo.id)
                raise
            marker.write_text(combo.id)
