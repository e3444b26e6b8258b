"""A table of the user's own gets its own migration branch by the generated README's recipe."""

import re
import shlex
from pathlib import Path

from tests.conftest import BASE_ANSWERS, project_tool, render, sync_project, tool
from tests.helpers.schema_update import columns
from tests.helpers.update import edit

ORDERS_MODELS = '''"""The `orders` table: the user's own."""

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.database import Base


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
'''
NOTE_COLUMN = "    note: Mapped[str | None] = mapped_column(String(500))\n"


def readme_recipe(project: Path) -> list[list[str]]:
    """The commands of the README's "Your own tables", as written (continuations joined)."""
    readme = (project / "README.md").read_text()
    section = readme[readme.index("**Your own tables**") :]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "no sh block in the README's 'Your own tables'"
    text = block.group(1).replace("\\\n", " ")
    commands = [shlex.split(line, comments=True) for line in text.splitlines()]
    return [[tool("uv"), *command[1:]] for command in commands if command]


def test_own_models_get_a_branch_by_the_readme_recipe_and_start_up_creates_them(
    template_snapshot: Path, tmp_path: Path
) -> None:
    answers = {**BASE_ANSWERS, "scenarios": [], "include_docker": False, "include_ci": False}
    project = render(template_snapshot, tmp_path / "project", answers)
    sync_project(project)
    database = tmp_path / "work.db"
    env = {"DATABASE_URL": f"sqlite:///{database}"}
    first, second, check = readme_recipe(project)
    assert first[:3] == [tool("uv"), "run", "alembic"] and "orders_0001" in first
    assert "orders_0002" in second and check[-1] == "check"

    # The README's steps: models, a migrations package, the folder in version_locations.
    package = project / "app" / "orders"
    (package / "migrations").mkdir(parents=True)
    (package / "__init__.py").write_text('"""Orders: the user\'s own feature."""\n')
    (package / "migrations" / "__init__.py").write_text("")
    (package / "models.py").write_text(ORDERS_MODELS)
    edit(
        project / "pyproject.toml",
        '    "app/jobs/migrations",\n',
        '    "app/jobs/migrations",\n    "app/orders/migrations",\n',
    )
    project_tool(project, "python", "-m", "app.core.migrate", env=env)  # at the heads

    project_tool(project, *first[2:], env=env)
    project_tool(project, "python", "-m", "app.core.migrate", env=env)
    with (package / "models.py").open("a") as models:
        models.write(NOTE_COLUMN)
    project_tool(project, *second[2:], env=env)
    project_tool(project, "python", "-m", "app.core.migrate", env=env)

    assert "No new upgrade operations detected" in project_tool(project, *check[2:], env=env)
    assert {"id", "title", "note"} <= set(columns(database, "orders"))
    # A new database gets the user's branch at start-up, like every other part.
    fresh = tmp_path / "fresh.db"
    project_tool(
        project, "python", "-m", "app.core.migrate", env={"DATABASE_URL": f"sqlite:///{fresh}"}
    )
    assert {"id", "title", "note"} <= set(columns(fresh, "orders"))
    # What autogenerate wrote passes the project's own checks, migration tests included.
    project_tool(project, "ruff", "check", ".")
    project_tool(project, "ruff", "format", "--check", ".")
    project_tool(project, "mypy")
    project_tool(project, "pytest", "-q", "-p", "no:cacheprovider", "tests/core/test_migrate.py")
