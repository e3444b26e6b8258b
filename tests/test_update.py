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
from typing import Any

import pytest
import yaml

from tests.conftest import (
    BASE_ANSWERS,
    COPIER_YML,
    QUESTIONS,
    ROOT,
    choice_values,
    project_env,
    project_tool,
    run,
    sync_project,
    tool,
)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}
CONFLICT_MARKER = re.compile(r"^(<{7}|>{7}|={7})( |$)", re.MULTILINE)


def git(cwd: Path, *args: str) -> str:
    return run(["git", *args], cwd, {**os.environ, **GIT_ENV})


def copier(*args: str, cwd: Path) -> str:
    """The real command line, as a user types it."""
    return run([sys.executable, "-m", "copier", *args], cwd)


def assert_no_conflicts(project: Path) -> None:
    """`copier update` exits 0 even when it leaves conflicts, so look for them ourselves."""
    problems = []
    for path in project.rglob("*"):
        if ".venv" in path.parts or ".git" in path.parts or not path.is_file():
            continue
        if path.suffix == ".rej" or path.name.endswith(".orig"):
            problems.append(f"leftover {path.relative_to(project)}")
        elif CONFLICT_MARKER.search(path.read_text(errors="replace")):
            problems.append(f"conflict markers in {path.relative_to(project)}")
    unmerged = git(project, "ls-files", "--unmerged").strip()
    if unmerged:
        problems.append(f"unmerged paths:\n{unmerged}")
    if problems:
        pytest.fail("copier update left conflicts:\n" + "\n".join(problems), pytrace=False)


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


# --- three releases of the template ---------------------------------------------------------


def snapshot_template(repo: Path) -> None:
    if repo.exists():
        shutil.rmtree(repo / "template")
    else:
        repo.mkdir()
        git(repo, "init", "-q")
    shutil.copy2(COPIER_YML, repo / "copier.yml")
    shutil.copytree(
        ROOT / "template",
        repo / "template",
        ignore=shutil.ignore_patterns("__pycache__", ".ruff_cache", ".pytest_cache"),
    )


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


EMAIL_DIR = "{% if 'email' in scenarios %}email{% endif %}"
RELEASED_WELCOME_FOOTER = (
    "If you did not sign up, reply to this email and we will remove the account."
)


def release_new_template_version(repo: Path) -> None:
    """What a template release typically brings: a new setting, its docs, a new module, and
    a change in a scenario's file (the welcome email, which the user has edited too)."""
    edit(
        repo / "template/app/core/config.py",
        "    job_lease_seconds: float = Field(default=30.0, gt=0)\n",
        "    job_lease_seconds: float = Field(default=30.0, gt=0)\n"
        "    request_timeout_seconds: float = Field(default=30.0, gt=0)\n",
    )
    edit(
        repo / "template/.env.example.jinja",
        "SHUTDOWN_GRACE_SECONDS=10\n",
        "SHUTDOWN_GRACE_SECONDS=10\n# Upper bound on a request's own work.\nREQUEST_TIMEOUT_SECONDS=30\n",
    )
    edit(
        repo / f"template/app/features/{EMAIL_DIR}/templates/welcome.txt",
        "If you did not sign up, you can ignore this email.",
        RELEASED_WELCOME_FOOTER,
    )
    (repo / "template/app/core/version.py").write_text(
        '"""The template release this project was last updated to."""\n\nTEMPLATE_RELEASE = "0.2.0"\n'
    )


# The v0.3.0 release moves this module (with a user's edit in it) and renames a setting.
MOVED_FROM, MOVED_TO = "app/core/memory.py", "app/core/startup.py"


def recipe(heading: str) -> list[str]:
    """The Python blocks under `heading` in docs/releasing.md, for v0.3.0 to apply verbatim."""
    section = (ROOT / "docs/releasing.md").read_text().split(f"\n## {heading}\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]


def release_renamed_setting_and_moved_module(repo: Path) -> None:
    """A release that an update cannot merge by itself, made as docs/releasing.md says:
    REQUEST_TIMEOUT_SECONDS renamed REQUEST_DEADLINE_SECONDS (the old name still read), and
    app/core/memory.py moved to app/core/startup.py."""
    config = repo / "template/app/core/config.py"
    edit(config, "import re\n", "import re\nimport warnings\n")
    # The imports the renamed setting needs, unless the module has them already.
    if "Self" not in config.read_text():
        edit(config, "from typing import Literal, ", "from typing import Literal, Self, ")
    if "model_validator" not in config.read_text():
        edit(
            config,
            "ValidationError, field_validator\n",
            "ValidationError, field_validator, model_validator\n",
        )
    setting, its_test = recipe("A renamed setting")
    edit(
        config,
        "    request_timeout_seconds: float = Field(default=30.0, gt=0)\n",
        setting.split("\n", 2)[2],  # below the lines that show where it goes
    )
    test_config = repo / "template/tests/core/test_config.py"
    test_config.write_text(f"{test_config.read_text()}\n\n{its_test}")
    edit(
        repo / "template/.env.example.jinja",
        "REQUEST_TIMEOUT_SECONDS=30\n",
        "REQUEST_DEADLINE_SECONDS=30\n"
        "# Renamed from REQUEST_TIMEOUT_SECONDS in 0.3.0 (the old name is read until 0.4.0).\n",
    )
    (repo / "template" / MOVED_FROM).rename(repo / "template" / MOVED_TO)
    main = repo / "template/app/main.py.jinja"
    edit(main, "from app.core.memory import freeze_start_up_objects\n", "")
    edit(
        main,
        "from app.core.router import router as ops_router\n",
        "from app.core.router import router as ops_router\n"
        "from app.core.startup import freeze_start_up_objects\n",
    )
    readme = repo / "template/README.md.jinja"
    readme.write_text(readme.read_text().replace(MOVED_FROM, MOVED_TO))


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A template repository with three tagged releases: v0.1.0 (today's), v0.2.0 and
    v0.3.0."""
    repo = tmp_path_factory.mktemp("template-repo") / "template"
    snapshot_template(repo)
    releases = {
        "v0.1.0": None,
        "v0.2.0": release_new_template_version,
        "v0.3.0": release_renamed_setting_and_moved_module,
    }
    for tag, release in releases.items():
        if release:
            release(repo)
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", f"release {tag}")
        git(repo, "tag", tag)
    return repo


# --- a user's project ------------------------------------------------------------------------

# The README's advice: own routers live in `app/api/` (a package the template never creates)
# and are registered with two lines in app/main.py that sit away from the scenario lines, so
# adding or removing a scenario merges cleanly.
CUSTOM_API = '''"""Our own endpoints, collected into one router for app/main.py."""

from fastapi import APIRouter

from app.api import ping

router = APIRouter()
router.include_router(ping.router)
'''

CUSTOM_ROUTER = '''"""The user's own endpoint, added after generation."""

from fastapi import APIRouter

from app.core.security import ClientScope

router = APIRouter(dependencies=[ClientScope])  # every route declares who may call it


@router.get("/custom/ping")
def ping() -> dict[str, str]:
    return {"pong": "yes"}
'''

CUSTOM_TEST = '''"""The user's own test."""

from fastapi.testclient import TestClient


def test_custom_ping(client: TestClient) -> None:
    assert client.get("/custom/ping").json() == {"pong": "yes"}
'''
USER_WELCOME = "Thanks for joining us! Your account for {{ email }} is ready."
# Where the README says to put them: a section of our own just under the header.
USER_ENV = "# --- Ours ---\nPAYMENTS_API_URL=https://payments.example.com\n\n"
# And our own docs at the end of the README.
USER_DOCS = "\n## Our runbook\n\nPage the payments team when /custom/ping fails.\n"


def cli_value(value: Any) -> str:
    """An answer as `copier --data` expects it (YAML: lists in brackets, booleans lowercase)."""
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def generate(template_repo: Path, destination: Path, ref: str, **answers: Any) -> Path:
    data = [
        arg
        for key, value in {**BASE_ANSWERS, **answers}.items()
        for arg in ("--data", f"{key}={cli_value(value)}")
    ]
    copier(
        "copy",
        "--defaults",
        "--vcs-ref",
        ref,
        *data,
        str(template_repo),
        str(destination),
        cwd=destination.parent,
    )
    git(destination, "init", "-q")
    git(destination, "add", "-A")
    git(destination, "commit", "-qm", "generated from the template")
    return destination


def make_user_edits(project: Path) -> None:
    """A new route with its test, a changed setting, an edited core module, an edited feature
    file (the email scenario's welcome text, when the project has email), dependencies added
    with `uv add`, a variable of our own in .env.example and a section of our own in the
    README."""
    (project / "app/api").mkdir()
    (project / "app/api/__init__.py").write_text(CUSTOM_API)
    (project / "app/api/ping.py").write_text(CUSTOM_ROUTER)
    (project / "tests/test_custom.py").write_text(CUSTOM_TEST)
    # `app.api` sorts first among the app imports, far from the scenario imports; the include
    # goes after the loop over ROUTERS, never into the list the template rewrites.
    edit(
        project / "app/main.py",
        "from app.core.config import check_settings, get_settings\n",
        "from app.api import router as api_router\nfrom app.core.config import check_settings, get_settings\n",
    )
    edit(
        project / "app/main.py",
        "    for router in ROUTERS:\n        app.include_router(router)\n",
        "    for router in ROUTERS:\n        app.include_router(router)\n"
        "    app.include_router(api_router)  # ours\n",
    )
    edit(project / "app/core/config.py", 'log_level: str = "INFO"', 'log_level: str = "WARNING"')
    edit(
        project / "app/jobs/router.py",
        '"""`GET /jobs/{job_id}`: the status of any piece of background work."""',
        '"""`GET /jobs/{job_id}`: the status of any piece of background work (edited by us)."""',
    )
    if has_email(project):
        edit(
            project / "app/features/email/templates/welcome.txt",
            "Welcome aboard! Your account for {{ email }} is ready.",
            USER_WELCOME,
        )
    # `uv add` appends at the end of each list, where no scenario's lines are.
    uv_add = [tool("uv"), "add", "--frozen", "--quiet"]
    run([*uv_add, "python-dateutil>=2.9"], project, project_env(project))
    run([*uv_add, "--dev", "pytest-timeout>=2.3"], project, project_env(project))
    env_example = project / ".env.example"
    header, rest = env_example.read_text().split("\n", 1)
    env_example.write_text(f"{header}\n{USER_ENV}{rest}")
    readme = project / "README.md"
    readme.write_text(readme.read_text() + USER_DOCS)
    commit_all(project, "our own changes")


def assert_user_edits_survived(project: Path) -> None:
    assert (project / "app/api/__init__.py").read_text() == CUSTOM_API
    assert (project / "app/api/ping.py").read_text() == CUSTOM_ROUTER
    main = (project / "app/main.py").read_text()
    assert "from app.api import router as api_router\n" in main
    assert "app.include_router(api_router)  # ours" in main
    assert 'log_level: str = "WARNING"' in (project / "app/core/config.py").read_text()
    assert "(edited by us)" in (project / "app/jobs/router.py").read_text()
    if has_email(project):
        assert USER_WELCOME in (project / "app/features/email/templates/welcome.txt").read_text()
    pyproject = (project / "pyproject.toml").read_text()
    assert '    "prometheus-client>=0.20",\n    "python-dateutil>=2.9",\n]' in pyproject
    assert '    "psycopg[binary]>=3.2",\n    "pytest-timeout>=2.3",\n]' in pyproject
    assert USER_ENV in (project / ".env.example").read_text()
    assert (project / "README.md").read_text().endswith(USER_DOCS)


def assert_project_green(project: Path) -> None:
    sync_project(project)
    project_tool(project, "ruff", "check", ".")
    project_tool(project, "ruff", "format", "--check", ".")
    project_tool(project, "pytest", "-q", "-p", "no:cacheprovider")


def answers_of(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / ".copier-answers.yml").read_text())


def has_email(project: Path) -> bool:
    return "email" in answers_of(project)["scenarios"]


def change_answers(project: Path, **answers: Any) -> None:
    """Change answers without moving to another template version, as the README shows."""
    data = [
        arg for key, value in answers.items() for arg in ("--data", f"{key}={cli_value(value)}")
    ]
    copier("update", "--defaults", "--vcs-ref", ":current:", *data, cwd=project)


def commit_all(project: Path, message: str) -> None:
    git(project, "add", "-A")
    git(project, "commit", "-qm", message)


@pytest.fixture(scope="module")
def edited_projects(
    template_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Path]:
    """A user's project per release and answers, generated and edited once for the module."""
    made: dict[str, Path] = {}

    def edited(ref: str, **answers: Any) -> Path:
        key = json.dumps([ref, answers], sort_keys=True)
        if key not in made:
            destination = tmp_path_factory.mktemp("edited") / "my-service"
            made[key] = generate(template_repo, destination, ref, **answers)
            make_user_edits(made[key])
        return made[key]

    return edited


@pytest.fixture
def user_project(edited_projects: Callable[..., Path], tmp_path: Path) -> Callable[..., Path]:
    """A copy of the user's project (its git history included) for one test to update."""

    def make(ref: str = "v0.1.0", **answers: Any) -> Path:
        project = tmp_path / "my-service"
        shutil.copytree(
            edited_projects(ref, **answers),
            project,
            symlinks=True,
            ignore=shutil.ignore_patterns(".venv", "__pycache__", ".ruff_cache"),
        )
        return project

    return make


def test_update_brings_the_new_release_and_keeps_user_edits(
    user_project: Callable[..., Path],
) -> None:
    project = user_project()

    copier("update", "--defaults", "--vcs-ref", "v0.2.0", cwd=project)

    assert_no_conflicts(project)
    assert_user_edits_survived(project)
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
}
OUR_NOTES = "\nOur notes on running this in production.\n"


def grep_traces(project: Path, scenario: str) -> subprocess.CompletedProcess[str]:
    patterns = [arg for trace in SCENARIO_TRACES[scenario] for arg in ("-e", trace)]
    return subprocess.run(
        ["git", "grep", "-n", "-F", *patterns], cwd=project, capture_output=True, text=True
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
    (project / "app/api/ping.py").write_text(CUSTOM_ROUTER + "\n# work in progress\n")
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


def check_update(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "copier", "check-update", *args],
        cwd=project,
        capture_output=True,
        text=True,
    )


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
