"""Schema migrations: fresh databases, adoption of create_all tables, downgrades, locks, start-up."""

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.util import CommandError
from fastapi.testclient import TestClient
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, Uuid, insert, inspect, text

from app.core.config import get_settings
from app.core.database import (
    UtcDateTime,
    get_engine,
    reset_database_state,
    session_scope,
    utcnow,
)
from app.core.migrate import (
    ROOT,
    alembic_config,
    branches,
    schema_problem,
    script_directory,
    upgrade_to_heads,
)
from app.jobs.models import Job, JobStatus


@pytest.fixture
def empty_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A database file that does not exist yet, as on a first deploy."""
    path = tmp_path / "empty.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    get_settings.cache_clear()
    reset_database_state()
    yield path
    reset_database_state()


def versions() -> set[str]:
    with get_engine().connect() as connection:
        return set(connection.scalars(text("SELECT version_num FROM alembic_version")))


def first_revisions() -> set[str]:
    """The first revision of each part (core, each scenario)."""
    return {script.revision for script in script_directory().walk_revisions() if script.is_base}


def all_revisions() -> set[str]:
    return {script.revision for script in script_directory().walk_revisions()}


def test_a_fresh_database_gets_every_revision_and_matches_the_models(empty_database: Path) -> None:
    assert upgrade_to_heads() == sorted(all_revisions())

    command.check(alembic_config())  # raises when the models and the migrations disagree
    assert upgrade_to_heads() == []  # a second start changes nothing
    assert schema_problem() is None


def test_every_part_has_its_own_branch_depending_on_the_core() -> None:
    script = script_directory()
    labels = {label for rev in script.walk_revisions() for label in rev.branch_labels}
    assert "core" in labels
    for base in first_revisions() - {"core_0001"}:
        revision = script.get_revision(base)
        assert revision is not None
        assert revision.branch_labels, f"{base} has no branch label"
        assert revision.dependencies == "core_0001", f"{base} must depend on core_0001"


def test_every_migrations_folder_is_a_version_location() -> None:
    folders = {
        str(path.parent.relative_to(ROOT))
        for path in (ROOT / "app").rglob("migrations/__init__.py")
    }
    locations = alembic_config().get_version_locations_list() or []
    assert {str(Path(location).relative_to(ROOT)) for location in locations} == folders


def adoptable(newest: bool) -> set[str]:
    """Per part, the oldest or newest revision whose tables a create_all of main could make."""
    picked = set()
    for chain in branches(script_directory()):
        candidates = [rev.revision for rev in chain if hasattr(rev.module, "matches_create_all")]
        if candidates:
            picked.add(candidates[-1] if newest else candidates[0])
    return picked


def as_create_all_left_it(revisions: set[str]) -> None:
    """The tables as those revisions have them, and no record of any revision."""
    config = alembic_config()
    for revision in sorted(revisions):
        command.upgrade(config, revision)
    with get_engine().begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))


# The jobs table as its first revision made it: the model has columns later revisions add.
FIRST_JOBS = Table(
    "jobs",
    MetaData(),
    Column("id", Uuid()),
    Column("kind", String()),
    Column("status", String()),
    Column("args", JSON()),
    Column("attempts", Integer()),
    Column("created_at", UtcDateTime()),
    Column("updated_at", UtcDateTime()),
)


@pytest.mark.parametrize("newest", [False, True], ids=["oldest", "newest"])
def test_tables_made_before_migrations_are_adopted_and_upgraded_with_their_rows(
    empty_database: Path, newest: bool
) -> None:
    as_create_all_left_it(adoptable(newest))
    job_id, now = uuid.uuid4(), utcnow()
    with get_engine().begin() as connection:
        connection.execute(
            insert(FIRST_JOBS).values(
                id=job_id,
                kind="old",
                status="succeeded",
                args={},
                attempts=0,
                created_at=now,
                updated_at=now,
            )
        )

    applied = upgrade_to_heads()

    stamped = {
        ancestor.revision
        for revision in adoptable(newest)
        for ancestor in script_directory().iterate_revisions(revision, "base")
    }
    assert set(applied) == all_revisions() - stamped
    command.check(alembic_config())
    assert schema_problem() is None
    with session_scope() as session:
        assert session.get(Job, job_id) is not None


def test_a_removed_parts_version_is_forgotten_and_the_rest_upgrades(
    empty_database: Path, service_log: Callable[[], str]
) -> None:
    upgrade_to_heads()
    with get_engine().begin() as connection:
        connection.execute(text("INSERT INTO alembic_version VALUES ('removedpart_0003')"))

    assert upgrade_to_heads() == []

    assert "removedpart_0003" not in versions()
    assert "forgot schema revision removedpart_0003" in service_log()
    assert schema_problem() is None


def test_downgrading_the_core_refuses_while_jobs_hold_rows(empty_database: Path) -> None:
    upgrade_to_heads()
    with session_scope() as session:
        session.add(
            Job(
                id=uuid.uuid4(),
                kind="kept",
                status=JobStatus.QUEUED,
                args={},
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )

    with pytest.raises(CommandError, match="refusing to drop table jobs: it holds rows"):
        command.downgrade(alembic_config(), "base")

    assert "jobs" in inspect(get_engine()).get_table_names()


def test_each_parts_newest_revision_downgrades_and_upgrades_again_when_empty(
    empty_database: Path,
) -> None:
    upgrade_to_heads()
    config = alembic_config()
    for head in set(script_directory().get_heads()) - {"core_0001"}:
        command.downgrade(config, f"{head}@-1")  # each scenario's newest revision
    command.downgrade(config, "base")
    assert inspect(get_engine()).get_table_names() == ["alembic_version"]

    upgrade_to_heads()
    command.check(config)


A_RELEASES_REVISION = '''"""A revision a release brings: one more table."""

import sqlalchemy as sa
from alembic import op

revision = "release_0001"
down_revision = None
branch_labels = ("release",)
depends_on = "core_0001"


def upgrade() -> None:
    op.create_table("release_things", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("release_things")
'''


@pytest.fixture
def a_release_revision(tmp_path: Path) -> Iterator[str]:
    """The code gains a revision (as after a deploy of a new release) for this test only."""
    folder = tmp_path / "release_migrations"
    folder.mkdir()
    (folder / "release_0001.py").write_text(A_RELEASES_REVISION)
    config = alembic_config()
    locations = config.get_main_option("version_locations") or ""
    config.set_main_option("version_locations", f"{locations}\n{folder}")
    script_directory.cache_clear()
    yield "release_0001"
    alembic_config.cache_clear()
    script_directory.cache_clear()


def test_with_migrate_on_start_off_health_says_the_schema_is_behind(
    empty_database: Path, monkeypatch: pytest.MonkeyPatch, a_release_revision: str
) -> None:
    from tests.sample_work import create_sample_app

    for head in set(script_directory().get_heads()) - {a_release_revision}:
        command.upgrade(alembic_config(), head)  # every revision but the release's
    monkeypatch.setenv("MIGRATE_ON_START", "false")
    get_settings.cache_clear()
    with TestClient(create_sample_app()) as client:
        response = client.get("/health")
        assert response.status_code == 503
        assert response.json()["components"]["schema"] == "behind"
        assert "python -m app.core.migrate" in response.json()["reasons"]["schema"]

        assert upgrade_to_heads() == [a_release_revision]  # what the deploy step runs

        response = client.get("/health")
        assert response.status_code == 200
        assert response.json()["components"]["schema"] == "ok"


def run_python(code: str, database: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "LOG_FORMAT": "console"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_processes_starting_together_upgrade_once(empty_database: Path) -> None:
    code = "from app.core.migrate import upgrade_to_heads; print(len(upgrade_to_heads()))"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{empty_database}"}
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [start.communicate(timeout=60)[0] for start in starts]

    assert [start.returncode for start in starts] == [0, 0, 0]
    applied = sorted(int(output.split()[-1]) for output in outputs)
    assert applied == [0, 0, len(all_revisions())], outputs


def test_with_migrate_on_start_off_an_empty_database_stops_start_up_with_one_line(
    empty_database: Path,
) -> None:
    result = run_python(
        "import os; os.environ['MIGRATE_ON_START'] = 'false'\n"
        "from app.core.migrate import prepare_schema; prepare_schema()",
        empty_database,
    )

    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert (
        "cannot start: MIGRATE_ON_START is off and the database has no schema revision yet: "
        "run `python -m app.core.migrate`" in result.stderr
    )


def test_a_database_from_a_newer_release_stops_start_up_with_one_line(
    empty_database: Path,
) -> None:
    upgrade_to_heads()
    with get_engine().begin() as connection:
        connection.execute(text("INSERT INTO alembic_version VALUES ('core_9999')"))

    result = run_python(
        "from app.core.migrate import prepare_schema; prepare_schema()", empty_database
    )

    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert (
        "cannot start: the database is at schema revision core_9999, which this code does not "
        "know" in result.stderr
    )
