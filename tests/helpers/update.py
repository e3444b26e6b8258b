"""A template repository with three releases, and a user's edited project to update."""

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
    ROOT,
    project_env,
    project_tool,
    run,
    sync_project,
    tool,
)
from tests.helpers.markdown import code_blocks

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


VERSION_MODULE = '''"""`GET /version`: the template release this project was last updated to."""

from fastapi import APIRouter

from app.core.security import Public

TEMPLATE_RELEASE = "0.2.0"
router = APIRouter(dependencies=[Public])


@router.get("/version")
async def read_version() -> dict[str, str]:
    return {"template_release": TEMPLATE_RELEASE}
'''


def release_new_template_version(repo: Path) -> None:
    """What a template release typically brings: a new setting, its docs, a new module with
    its router in app/main.py, and a change in a scenario's file (the welcome email, which
    the user has edited too)."""
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
    (repo / "template/app/core/version.py").write_text(VERSION_MODULE)
    # A new router in app/main.py, right beside the line that serves the user's routes.
    main = repo / "template/app/main.py.jinja"
    # After whatever app.core.validation gives main (isort order), not a line spelled here.
    validation = re.search(r"^from app\.core\.validation import .*\n", main.read_text(), re.M)
    assert validation, f"no app.core.validation import in {main}"
    edit(
        main,
        validation.group(0),
        validation.group(0) + "from app.core.version import router as version_router\n",
    )
    edit(main, "    jobs_router,\n", "    jobs_router,\n    version_router,\n")


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
    field = "    request_timeout_seconds: float = Field(default=30.0, gt=0)\n"
    block = setting.split("\n", 2)[2]  # below the lines that show where it goes
    text = config.read_text()
    if not text[text.index(field) + len(field) :].startswith("\n"):
        block += "\n"  # a method ends here: a blank line before the next field's comment
    edit(config, field, block)
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
    edit(  # where isort puts it: after app.core.security, before app.core.tracing
        main,
        "from app.core.tracing import TracingMiddleware, configure_tracing, flush_tracing\n",
        "from app.core.startup import freeze_start_up_objects\n"
        "from app.core.tracing import TracingMiddleware, configure_tracing, flush_tracing\n",
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


# The generated README's section whose Python blocks a user copies to add endpoints; each
# block's first line names the file it goes in.
ENDPOINTS_RECIPE = "Your own endpoints"


def endpoint_recipe(readme: Path) -> dict[str, str]:
    """The README's code for adding endpoints, by the file each block goes in."""
    blocks = code_blocks(readme, ENDPOINTS_RECIPE, "python")
    assert len(blocks) == 2, f"expected a module and the router that includes it: {blocks}"
    return {block.split("\n", 1)[0].removeprefix("# "): block for block in blocks}


# What a user following today's README (v0.1.0) writes.
USER_ENDPOINTS = endpoint_recipe(ROOT / "template" / "README.md.jinja")
ORDERS_TEST_PATH = "tests/api/test_orders.py"
ORDERS_TEST = '''"""Our own endpoint's test."""

from fastapi.testclient import TestClient


def test_an_order_is_read_back(client: TestClient) -> None:
    assert client.get("/orders/7").json() == {"id": 7}
'''


USER_WELCOME = "Thanks for joining us! Your account for {{ email }} is ready."


# Where the README says to put them: a section of our own just under the header.
USER_ENV = "# --- Ours ---\nPAYMENTS_API_URL=https://payments.example.com\n\n"


# And our own docs at the end of the README.
USER_DOCS = "\n## Our runbook\n\nPage the payments team when /orders fails.\n"


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
    """Endpoints of our own added as the README says, with their test, a changed setting, an edited core module, an edited feature
    file (the email scenario's welcome text, when the project has email), dependencies added
    with `uv add`, a variable of our own in .env.example and a section of our own in the
    README."""
    for path, code in USER_ENDPOINTS.items():
        (project / path).write_text(code)
    (project / ORDERS_TEST_PATH).write_text(ORDERS_TEST)
    edit(project / "app/core/config.py", 'log_level: str = "INFO"', 'log_level: str = "WARNING"')
    # The user rewrites the module's docstring line, whatever the template had there.
    router = project / "app/jobs/router.py"
    docstring = router.read_text().splitlines(keepends=True)[0]
    edit(
        router,
        docstring,
        '"""`/jobs`: our operators\' view of background work (edited by us)."""\n',
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
    for path, code in USER_ENDPOINTS.items():
        assert (project / path).read_text() == code, path
    assert (project / ORDERS_TEST_PATH).read_text() == ORDERS_TEST
    assert 'log_level: str = "WARNING"' in (project / "app/core/config.py").read_text()
    assert "(edited by us)" in (project / "app/jobs/router.py").read_text()
    if has_email(project):
        assert USER_WELCOME in (project / "app/features/email/templates/welcome.txt").read_text()
    pyproject = (project / "pyproject.toml").read_text()
    # Still last in their lists, whatever the template added above them.
    assert '    "python-dateutil>=2.9",\n]' in pyproject
    assert '    "pytest-timeout>=2.3",\n]' in pyproject
    assert USER_ENV in (project / ".env.example").read_text()
    assert (project / "README.md").read_text().endswith(USER_DOCS)


def assert_project_green(project: Path) -> None:
    """What the generated README says to run after an update."""
    sync_project(project)
    project_tool(project, "ruff", "check", ".")
    project_tool(project, "ruff", "format", "--check", ".")
    project_tool(project, "mypy")
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


def check_update(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "copier", "check-update", *args],
        cwd=project,
        capture_output=True,
        text=True,
    )
