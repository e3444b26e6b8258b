"""`copier update` and `check-update` on a user's edited project: edits survive, template
changes arrive, no conflicts; what an update cannot merge is documented and recoverable."""

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import (
    BASE_ANSWERS,
    QUESTIONS,
    choice_values,
    project_env,
    run,
    sync_project,
    tool,
)
from tests.helpers.schema_update import (
    ALL_SCENARIOS,
    PRE_MIGRATION_REVISIONS,
    alembic_check,
    columns,
    history_repo,
    release_items_sku,
    use_service,
)
from tests.helpers.update import (
    GIT_ENV,
    MOVED_FROM,
    MOVED_TO,
    RELEASED_WELCOME_FOOTER,
    answers_of,
    assert_no_conflicts,
    assert_project_green,
    assert_user_edits_survived,
    change_answers,
    check_update,
    commit_all,
    copier,
    edit,
    generate,
    git,
)


def test_conflict_check_fails_loudly_on_markers_rej_files_and_unmerged_paths(
    tmp_path: Path,
) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "ok.py").write_text("x = '======='  # not a marker\n")
    (tmp_path / "c.py").write_text("x = 0\n")
    commit_all(tmp_path, "base")
    assert_no_conflicts(tmp_path)

    # A real merge conflict: two branches change the same line.
    git(tmp_path, "checkout", "-qb", "theirs")
    (tmp_path / "c.py").write_text("x = 1\n")
    commit_all(tmp_path, "theirs")
    git(tmp_path, "checkout", "-q", "-")
    (tmp_path / "c.py").write_text("x = 2\n")
    commit_all(tmp_path, "ours")
    merge = subprocess.run(
        ["git", "merge", "-q", "theirs"],
        cwd=tmp_path,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
    )
    assert merge.returncode == 1
    # Its markers edited away but never `git add`ed: only the index still knows.
    (tmp_path / "c.py").write_text("x = 3\n")
    (tmp_path / "a.py").write_text(
        "<<<<<<< before updating\nx = 1\n=======\nx = 2\n>>>>>>> after\n"
    )
    (tmp_path / "b.py.rej").write_text("@@ hunk @@\n")
    with pytest.raises(pytest.fail.Exception) as failed:
        assert_no_conflicts(tmp_path)

    report = str(failed.value)
    assert "conflict markers in a.py" in report
    assert "leftover b.py.rej" in report
    assert "conflict markers in c.py" not in report
    assert re.search(r"unmerged paths:\n(.*\tc\.py\n?){3}$", report), report


def test_update_brings_the_new_release_and_keeps_user_edits(
    user_project: Callable[..., Path],
) -> None:
    """Endpoints added as the README says merge with a release that rewrites app/main.py."""
    project = user_project()
    main_before = git(project, "show", "HEAD:app/main.py")

    copier("update", "--defaults", "--vcs-ref", "v0.2.0", cwd=project)

    assert_no_conflicts(project)
    assert_user_edits_survived(project)  # app/api/ as the README's recipe wrote it
    main = (project / "app/main.py").read_text()
    assert main != main_before
    assert "    version_router,\n    api_router,  # your own endpoints" in main
    assert "request_timeout_seconds" in (project / "app/core/config.py").read_text()
    assert "REQUEST_TIMEOUT_SECONDS=30" in (project / ".env.example").read_text()
    assert (project / "app/core/version.py").exists()
    # The release's own change to the file the user edited merged in beside the user's.
    assert (
        RELEASED_WELCOME_FOOTER
        in (project / "app/features/email/templates/welcome.txt").read_text()
    )
    assert answers_of(project)["_commit"] == "v0.2.0"
    assert_project_green(project)


USER_GC_LINE = "    gc.collect()  # ours: drop start-up garbage before freezing the rest\n"


# The generated README's way to see what a moved file lost, right after the update's commit.
MOVE_RECOVERY = "git show -M HEAD -- <old path> <new path>"


SHOW_REQUEST_DEADLINE = (
    "from app.core.config import get_settings; print(get_settings().request_deadline_seconds)"
)


def test_renamed_setting_keeps_its_old_name_and_a_moved_module_shows_the_lost_edit(
    user_project: Callable[..., Path],
) -> None:
    project = user_project("v0.2.0", scenarios=["email"])
    edit(project / MOVED_FROM, "    gc.freeze()\n", USER_GC_LINE + "    gc.freeze()\n")
    commit_all(project, "collect before freezing")
    # Set under the name v0.2.0 gave it, in a file the update never touches (git ignores it).
    (project / ".env").write_text("REQUEST_TIMEOUT_SECONDS=5\n")

    copier("update", "--defaults", cwd=project)  # to the latest release, v0.3.0

    assert_no_conflicts(project)
    assert_user_edits_survived(project)
    assert answers_of(project)["_commit"] == "v0.3.0"
    assert (project / ".env").read_text() == "REQUEST_TIMEOUT_SECONDS=5\n"
    assert "REQUEST_DEADLINE_SECONDS=30" in (project / ".env.example").read_text()
    # The moved module arrives with the template's content; our copy is deleted, no conflict.
    assert not (project / MOVED_FROM).exists()
    assert USER_GC_LINE not in (project / MOVED_TO).read_text()
    commit_all(project, "Update from the template")
    # The README's command shows the move, and the line it lost is ours.
    readme = (project / "README.md").read_text()
    assert MOVE_RECOVERY in readme
    command = MOVE_RECOVERY.replace("<old path>", MOVED_FROM).replace("<new path>", MOVED_TO)
    shown = git(project, *command.split()[1:]).splitlines()
    assert f"rename from {MOVED_FROM}" in shown
    assert [line for line in shown if line.startswith(("-", "+"))] == [
        f"--- a/{MOVED_FROM}",
        f"+++ b/{MOVED_TO}",
        "-" + USER_GC_LINE.rstrip("\n"),
    ]
    # The old variable still counts, and the service says what to set instead.
    settings = subprocess.run(
        [tool("uv"), "run", "python", "-c", SHOW_REQUEST_DEADLINE],
        cwd=project,
        env=project_env(project),
        capture_output=True,
        text=True,
    )
    assert settings.stdout == "5.0\n", settings.stderr
    assert "FutureWarning: REQUEST_TIMEOUT_SECONDS is now called REQUEST_DEADLINE_SECONDS" in (
        settings.stderr
    )
    # Renamed as the warning says: start-up is quiet again (tests read its stderr).
    (project / ".env").write_text("REQUEST_DEADLINE_SECONDS=5\n")
    assert_project_green(project)


def test_answers_file_holds_what_an_update_needs_and_no_secret(
    user_project: Callable[..., Path], template_repo: Path
) -> None:
    given = {"scenarios": ["email", "cache_updates"], "task_backend": "celery", "include_ci": False}
    project = user_project(**given)
    answers = answers_of(project)

    # Where the template is and which version rendered the project...
    assert answers["_src_path"] == str(template_repo)
    assert answers["_commit"] == "v0.1.0"
    # ...every question the user is asked, as answered (defaults included: a missing answer
    # would silently fall back to a possibly changed default at the next update)...
    asked = {name for name, question in QUESTIONS.items() if question.get("when") is not False}
    assert set(answers) == {"_src_path", "_commit"} | asked
    for name, value in {**BASE_ANSWERS, **given}.items():
        assert answers[name] == value, name
    # ...and nothing else: no derived value, no runtime setting, no secret.
    assert "python_reserved_names" not in answers
    text = (project / ".copier-answers.yml").read_text().lower()
    assert not re.search(r"password|secret|token|api_key|smtp_|redis://|postgres", text)


def test_adding_a_scenario_during_update_brings_all_of_it_and_keeps_user_edits(
    user_project: Callable[..., Path],
) -> None:
    project = user_project(scenarios=["email"])

    change_answers(project, scenarios=["email", "cache_updates"])

    assert_no_conflicts(project)
    assert_user_edits_survived(project)
    assert answers_of(project)["scenarios"] == ["email", "cache_updates"]
    assert answers_of(project)["_commit"] == "v0.1.0"  # answers changed, version kept
    assert (project / "app/features/cache_updates/router.py").is_file()
    assert (project / "tests/features/cache_updates/test_router.py").is_file()
    main = (project / "app/main.py").read_text()
    assert "from app.features.cache_updates.router import router as cache_updates_router" in main
    assert "    cache_updates_router,\n" in main
    pyproject = (project / "pyproject.toml").read_text()
    assert '"redis>=' in pyproject
    assert '"fakeredis[lua]>=' in pyproject
    assert "CACHE_URL=memory://" in (project / ".env.example").read_text()
    assert_project_green(project)


SCENARIOS = choice_values(QUESTIONS["scenarios"])


# What only a scenario brings (its modules, variables, routes, dependencies, compose
# services, README section): none of it may be left once the scenario is removed.
SCENARIO_TRACES = {
    "email": [
        "features.email",
        "features/email",
        "SMTP_",
        "EMAIL_FROM",
        "/users",
        "aiosmtp",
        '"email-validator',
        "mailpit",
    ],
    "embeddings": [
        "features.embeddings",
        "features/embeddings",
        "EMBEDDINGS_",
        "/documents",
        '"numpy',
        '"python-multipart',
    ],
    "request_logging": [
        "request_logging",
        "REQUEST_LOG_",
        "RequestLog",
        "/logs/",
        "/conversations",
    ],
    "cache_updates": [
        "cache_updates",
        "CACHE_",
        "/items",
        "Cache updates",
        '"redis>=',
        "fakeredis",
    ],
    "webhooks": [
        "features.webhooks",
        "features/webhooks",
        "WEBHOOKS_",
        "/webhooks/",
        '"standardwebhooks',
        "### Webhooks",
    ],
}


OUR_NOTES = "\nOur notes on running this in production.\n"


# The core's test that no event machinery runs without webhooks names what must be absent.
NAMES_ABSENT_SCENARIOS = ":(exclude)tests/core/test_events.py"


def grep_traces(project: Path, scenario: str) -> subprocess.CompletedProcess[str]:
    patterns = [arg for trace in SCENARIO_TRACES[scenario] for arg in ("-e", trace)]
    return subprocess.run(
        ["git", "grep", "-n", "-F", *patterns, "--", ".", NAMES_ABSENT_SCENARIOS],
        cwd=project,
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_removing_a_scenario_during_update_leaves_nothing_of_it(
    user_project: Callable[..., Path], scenario: str
) -> None:
    # The smallest project that keeps the user's email edit: email and the scenario that
    # goes, or nothing once email itself goes.
    before = [name for name in SCENARIOS if name in {"email", scenario}]
    after = [name for name in before if name != scenario]
    project = user_project(scenarios=before)
    found = grep_traces(project, scenario).stdout
    assert [trace for trace in SCENARIO_TRACES[scenario] if trace not in found] == []
    # An edit inside the scenario that goes: the update deletes it, git history keeps it.
    notes = f"app/features/{scenario}/README.md"
    (project / notes).write_text((project / notes).read_text() + OUR_NOTES)
    commit_all(project, f"our notes on {scenario}")
    # Byte-code left by running the project, ignored by git: Copier leaves it behind.
    run([sys.executable, "-m", "compileall", "-q", "app", "tests"], project)

    change_answers(project, scenarios=after)

    assert_no_conflicts(project)
    assert_user_edits_survived(project)
    assert answers_of(project)["scenarios"] == after
    assert OUR_NOTES in git(project, "show", f"HEAD:{notes}")
    folders = [project / "app/features" / scenario, project / "tests/features" / scenario]
    for folder in folders:
        kept = [p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        assert kept == [], f"{folder} keeps {kept}"
        shutil.rmtree(folder)  # the README's clean-up step for ignored leftovers
    commit_all(project, f"removed {scenario}")
    dangling = grep_traces(project, scenario)
    assert dangling.returncode == 1, f"left behind:\n{dangling.stdout}{dangling.stderr}"
    assert_project_green(project)


def test_switching_backend_to_celery_and_back_keeps_the_project_green(
    user_project: Callable[..., Path],
) -> None:
    project = user_project(task_backend="background_tasks")

    change_answers(project, task_backend="celery")
    assert_no_conflicts(project)
    assert (project / "app/worker.py").exists()
    assert "celery" in (project / "pyproject.toml").read_text()
    assert_user_edits_survived(project)
    assert_project_green(project)
    commit_all(project, "switched to celery")

    change_answers(project, task_backend="background_tasks")
    assert_no_conflicts(project)
    assert not (project / "app/worker.py").exists()
    assert "celery" not in (project / "pyproject.toml").read_text()
    assert_user_edits_survived(project)
    assert_project_green(project)


def test_update_over_a_dirty_tree_is_refused_and_changes_nothing(
    user_project: Callable[..., Path],
) -> None:
    project = user_project()
    with (project / "app/api/orders.py").open("a") as orders:
        orders.write("# work in progress\n")
    before = {
        p: p.read_bytes() for p in project.rglob("*") if p.is_file() and ".git" not in p.parts
    }

    result = subprocess.run(
        [sys.executable, "-m", "copier", "update", "--defaults", "--vcs-ref", "v0.2.0"],
        cwd=project,
        capture_output=True,
        text=True,
    )

    assert result.returncode != 0
    assert "Destination repository is dirty; cannot continue" in result.stdout + result.stderr
    after = {p: p.read_bytes() for p in project.rglob("*") if p.is_file() and ".git" not in p.parts}
    assert after == before


def test_a_moved_template_is_found_again_once_the_answers_file_says_where(
    template_repo: Path, tmp_path: Path
) -> None:
    first, moved = tmp_path / "template-here", tmp_path / "template-there"
    git(tmp_path, "clone", "-q", str(template_repo), str(first))
    project = generate(first, tmp_path / "my-service", "v0.1.0", scenarios=[])
    first.rename(moved)

    lost = subprocess.run(
        [sys.executable, "-m", "copier", "update", "--defaults"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert lost.returncode == 1
    assert "Local template must be a directory." in lost.stderr  # the README quotes it
    # The README's one edit by hand to the answers file, committed before the update.
    edit(project / ".copier-answers.yml", f"_src_path: {first}\n", f"_src_path: {moved}\n")
    commit_all(project, "the template moved")
    copier("update", "--defaults", cwd=project)

    assert_no_conflicts(project)
    assert answers_of(project)["_commit"] == "v0.3.0"
    assert answers_of(project)["_src_path"] == str(moved)


def test_check_update_tells_a_project_behind_the_latest_tag_from_one_up_to_date(
    template_repo: Path, tmp_path: Path
) -> None:
    behind = generate(template_repo, tmp_path / "behind", "v0.1.0")
    current = generate(template_repo, tmp_path / "current", "v0.3.0")

    # For a scheduled CI job: nothing printed, exit 2 only when there is something to do.
    quiet = check_update(behind, "--quiet")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (2, "", "")
    quiet = check_update(current, "--quiet")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")

    # What the plain output says, for a script to read.
    as_json = check_update(behind, "--output-format", "json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout) == {
        "update_available": True,
        "current_version": "0.1.0",
        "latest_version": "0.3.0",
    }


# Schema migrations across updates: projects rendered from main before migrations existed
# (create_all databases, used), updated with the real `copier update`.


@pytest.fixture(scope="module")
def pre_migration_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    repo = tmp_path_factory.mktemp("history") / "template"
    return repo, history_repo(repo)


@pytest.mark.parametrize("old", range(len(PRE_MIGRATION_REVISIONS)), ids=PRE_MIGRATION_REVISIONS)
def test_a_project_from_before_migrations_updates_and_serves_its_old_rows(
    pre_migration_repo: tuple[Path, list[str]], tmp_path: Path, old: int
) -> None:
    repo, tags = pre_migration_repo
    project = generate(repo, tmp_path / "my-service", tags[old], scenarios=ALL_SCENARIOS)
    sync_project(project)
    database = tmp_path / "service.db"  # outside the project: the update needs a clean tree
    use_service(project, "seed", database, ALL_SCENARIOS)
    assert not (project / "app/core/migrate.py").exists()  # the old release: create_all

    copier("update", "--defaults", "--vcs-ref", "v1.0.0", cwd=project)

    assert_no_conflicts(project)
    sync_project(project)
    served = use_service(project, "check", database, ALL_SCENARIOS)
    assert " 500" not in served
    assert "welcome_email_sending_at" in columns(database, "users")
    assert "No new upgrade operations detected" in alembic_check(project, database)


def test_a_release_adding_a_column_reaches_the_database_of_an_updated_project(
    pre_migration_repo: tuple[Path, list[str]], tmp_path: Path
) -> None:
    repo, _tags = pre_migration_repo
    clone = tmp_path / "template"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    release_items_sku(clone)
    project = generate(clone, tmp_path / "my-service", "v1.0.0", scenarios=ALL_SCENARIOS)
    sync_project(project)
    database = tmp_path / "service.db"
    use_service(project, "seed", database, ALL_SCENARIOS)

    copier("update", "--defaults", "--vcs-ref", "v1.1.0", cwd=project)

    assert_no_conflicts(project)
    use_service(project, "check", database, ALL_SCENARIOS)
    assert "sku" in columns(database, "items")
    assert "No new upgrade operations detected" in alembic_check(project, database)


def test_adding_a_scenario_creates_its_tables_and_removing_one_keeps_them(
    pre_migration_repo: tuple[Path, list[str]], tmp_path: Path
) -> None:
    repo, _tags = pre_migration_repo
    project = generate(repo, tmp_path / "my-service", "v1.0.0", scenarios=["cache_updates"])
    sync_project(project)
    database = tmp_path / "service.db"
    use_service(project, "seed", database, ["cache_updates"])

    change_answers(project, scenarios=["email", "cache_updates"])
    assert_no_conflicts(project)
    commit_all(project, "added email")
    sync_project(project)
    use_service(project, "seed", database, ["email"])  # its tables exist: sign-up works
    use_service(project, "check", database, ["email", "cache_updates"])

    change_answers(project, scenarios=["email"])
    assert_no_conflicts(project)
    sync_project(project)
    served = use_service(project, "check", database, ["email"])
    assert "GET /health 200" in served
    # The removed scenario's rows stay (the README says so); Alembic forgot its revisions.
    assert "price_cents" in columns(database, "items")
    assert "No new upgrade operations detected" in alembic_check(project, database)
