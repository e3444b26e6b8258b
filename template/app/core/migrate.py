"""Schema migrations: bring the database to the code's heads at start-up, one process at a time."""

import argparse
import importlib
import importlib.util
import logging
import os
import pkgutil
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import lru_cache
from pathlib import Path
from typing import NoReturn

from alembic import command, op
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, func, inspect, select, text
from sqlalchemy.engine import make_url

import app
from app.core.config import get_settings
from app.core.database import get_engine

logger = logging.getLogger(__name__)

# The project's root: pyproject.toml holds [tool.alembic], its paths are relative to here.
ROOT = Path(app.__file__).resolve().parent.parent
# Any number, the same in every process of the service: the key of PostgreSQL's lock.
ADVISORY_LOCK_KEY = 0x5C4E_3A11
# A revision id of this project's convention: "<part>_<4 digits>" (core_0001, email_0002).
PART_REVISION = re.compile(r"^(?P<part>[a-z][a-z0-9_]*)_\d{4}$")


class SchemaError(Exception):
    """The database's schema cannot be brought to the code's: the message says what to do."""


def import_models() -> None:
    """Import every `models` module of the service, so the metadata holds every table."""
    import app.features

    for package in pkgutil.iter_modules(app.__path__):
        if package.ispkg:
            _import_if_present(f"app.{package.name}.models")
    for feature in pkgutil.iter_modules(app.features.__path__):
        _import_if_present(f"app.features.{feature.name}.models")


def _import_if_present(name: str) -> None:
    if importlib.util.find_spec(name) is not None:
        importlib.import_module(name)


@lru_cache
def alembic_config() -> Config:
    """The [tool.alembic] configuration, its folders made absolute (any working directory)."""
    pyproject = ROOT / "pyproject.toml"
    if not pyproject.is_file():
        raise SchemaError(f"{pyproject} is missing: it holds the migrations' [tool.alembic] table")
    config = Config(toml_file=pyproject)
    script_location = config.get_alembic_option("script_location")
    locations = config.get_version_locations_list() or []
    if not isinstance(script_location, str):
        raise SchemaError(f"{pyproject}: [tool.alembic] needs script_location")
    config.set_main_option("script_location", str(ROOT / script_location))
    config.set_main_option("path_separator", "newline")
    config.set_main_option("version_locations", "\n".join(str(ROOT / path) for path in locations))
    return config


@lru_cache
def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def applied_revisions(script: ScriptDirectory, heads: tuple[str, ...]) -> set[str]:
    """Every revision the database's heads include, dependencies of other parts included."""
    known = tuple(head for head in heads if _known(script, head))
    return {revision.revision for revision in script.iterate_revisions(known, "base")}


def _known(script: ScriptDirectory, revision: str) -> bool:
    return revision in script.revision_map._revision_map


def database_heads(connection: Connection) -> tuple[str, ...]:
    """The revisions Alembic recorded (read directly: a MigrationContext logs each time)."""
    if not inspect(connection).has_table("alembic_version"):
        return ()
    return tuple(connection.scalars(text("SELECT version_num FROM alembic_version")))


def pending_heads(connection: Connection) -> list[str]:
    """The code's heads the database has not reached yet (empty when it is up to date)."""
    script = script_directory()
    applied = applied_revisions(script, database_heads(connection))
    return sorted(set(script.get_heads()) - applied)


def schema_problem() -> str | None:
    """Why the database's schema is behind the code's, or None when it is not."""
    with get_engine().connect() as connection:
        pending = pending_heads(connection)
        unversioned = not database_heads(connection)
    if not pending:
        return None
    what = "has no schema revision yet" if unversioned else f"lacks {', '.join(pending)}"
    return (
        f"the database {what}: run `python -m app.core.migrate` (or start with "
        "MIGRATE_ON_START=true)"
    )


@contextmanager
def migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that only one process at a time holds, for the upgrade."""
    url = make_url(str(engine.url))
    with ExitStack() as stack:
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            # SQLite has no lock a process can wait on across transactions: a file beside it.
            stack.enter_context(file_lock(Path(f"{url.database}.migrate.lock")))
        connection = stack.enter_context(engine.begin())
        if engine.dialect.name == "postgresql":
            # Held until this transaction ends; PostgreSQL runs DDL inside transactions, so
            # the whole upgrade commits at once or not at all.
            key = ADVISORY_LOCK_KEY
            _wait(
                lambda: bool(connection.scalar(select(func.pg_try_advisory_xact_lock(key)))),
                lambda: connection.execute(select(func.pg_advisory_xact_lock(key))),
            )
        yield connection


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path`, released when the file closes (also if the process dies)."""
    with path.open("a+b") as lock:
        if sys.platform != "win32":  # Windows has no fcntl: SQLite there is for development
            import fcntl

            def try_now() -> bool:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                return True

            _wait(try_now, lambda: fcntl.flock(lock, fcntl.LOCK_EX))
        yield


def _wait(try_now: Callable[[], bool], block: Callable[[], object]) -> None:
    if try_now():
        return
    logger.info("another process is upgrading the database schema: waiting for it")
    started = time.monotonic()
    block()
    logger.info("the other process's schema upgrade ended after %.1fs", time.monotonic() - started)


def upgrade_to_heads() -> list[str]:
    """Adopt, forget and upgrade as needed; returns the revisions applied (none if up to date)."""
    script = script_directory()
    with migration_lock(get_engine()) as connection:
        context = MigrationContext.configure(connection)
        forget_removed_parts(connection, context, script)
        adopt_create_all_tables(connection, context, script)
        before = applied_revisions(script, context.get_current_heads())
        if set(script.get_heads()) <= before:
            return []
        config = alembic_config()
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, "heads")
        finally:
            del config.attributes["connection"]
        applied = sorted(applied_revisions(script, context.get_current_heads()) - before)
    logger.info("database schema upgraded: applied %s", ", ".join(applied))
    return applied


def forget_removed_parts(
    connection: Connection, context: MigrationContext, script: ScriptDirectory
) -> None:
    """Drop the version rows of parts the code no longer has; refuse revisions it does not know."""
    labels = {label for revision in script.walk_revisions() for label in revision.branch_labels}
    for head in context.get_current_heads():
        if _known(script, head):
            continue
        part = PART_REVISION.match(head)
        if part is None or part["part"] in labels:
            raise SchemaError(
                f"the database is at schema revision {head}, which this code does not know "
                "(a newer version of the service upgraded it): deploy that version again, or "
                f"with it run `alembic downgrade {part['part'] if part else head}@-1` first"
            )
        # A part removed from the project (a scenario, by `copier update`): its tables and
        # rows stay; only Alembic's record goes, so the remaining parts upgrade normally.
        connection.execute(
            text("DELETE FROM alembic_version WHERE version_num = :head"), {"head": head}
        )
        logger.warning(
            "forgot schema revision %s: its part is gone from the code (its tables and data "
            "stay in the database)",
            head,
        )


def adopt_create_all_tables(
    connection: Connection, context: MigrationContext, script: ScriptDirectory
) -> None:
    """Stamp each part whose tables `create_all` made before migrations, at the matching revision.

    A revision recognises the tables of its time with `matches_create_all(inspector)`; the
    newest that matches is stamped, so `upgrade` then applies only what those tables lack.
    """
    applied = applied_revisions(script, context.get_current_heads())
    inspector = inspect(connection)
    # The core first: the parts' first revisions depend on it.
    for chain in sorted(branches(script), key=lambda chain: bool(chain[0].dependencies)):
        if any(revision.revision in applied for revision in chain):
            continue
        adoptable = [
            revision
            for revision in reversed(chain)
            if hasattr(revision.module, "matches_create_all")
            and revision.module.matches_create_all(inspector)
        ]
        if adoptable:
            context.stamp(script, adoptable[0].revision)
            logger.info(
                "adopted tables made before migrations: stamped at schema revision %s",
                adoptable[0].revision,
            )


def branches(script: ScriptDirectory) -> Iterator[list[Script]]:
    """Each part's line of revisions, oldest first."""
    for head in script.get_heads():
        chain = []
        revision: Script | None = script.get_revision(head)
        while revision is not None:
            chain.append(revision)
            down = revision.down_revision
            revision = script.get_revision(down) if isinstance(down, str) else None
        yield list(reversed(chain))


def refuse_unless_empty(table: str) -> None:
    """In a downgrade: stop (one line from `alembic`) unless dropping `table` loses no row."""
    if op.get_bind().scalar(text(f"SELECT 1 FROM {table} LIMIT 1")) is not None:
        raise CommandError(
            f"refusing to drop table {table}: it holds rows. Back them up and drop it by hand "
            "if you mean to lose them"
        )


def refuse_unless_null(table: str, column: str) -> None:
    """In a downgrade: stop unless dropping `column` loses no value (every row's is NULL)."""
    query = text(f"SELECT 1 FROM {table} WHERE {column} IS NOT NULL LIMIT 1")
    if op.get_bind().scalar(query) is not None:
        raise CommandError(
            f"refusing to drop column {table}.{column}: some rows have a value in it. Back it "
            "up and drop it by hand if you mean to lose it"
        )


def exit_with(message: str) -> NoReturn:
    """Stop the process with one line, no traceback: from a lifespan or a Celery signal too."""
    logger.critical("cannot start: %s", message)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.write(f"cannot start: {message}\n")
    sys.stderr.flush()
    # A lifespan's exception is printed with its traceback, and a Celery signal's is only
    # logged: exiting here is the one way both stop with just the line above.
    os._exit(3)


def prepare_schema() -> None:
    """Start-up: upgrade (MIGRATE_ON_START=true, the default) or say how far behind it is."""
    try:
        if get_settings().migrate_on_start:
            upgrade_to_heads()
            return
        problem = schema_problem()
        with get_engine().connect() as connection:
            unversioned = not database_heads(connection)
    except SchemaError as exc:
        exit_with(str(exc))
    if problem and unversioned:
        # Not even the core's tables: nothing could work, so say it instead of failing later.
        exit_with(f"MIGRATE_ON_START is off and {problem}")
    if problem:
        # Older tables serve most requests; /health answers 503 until the upgrade runs.
        logger.warning("MIGRATE_ON_START is off and %s", problem)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m app.core.migrate",
        description="Upgrade the database to the code's schema (adopting tables made before "
        "migrations), under the same lock the service takes at start-up.",
    )
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if the schema is behind"
    )
    args = parser.parse_args(argv)
    from app.core.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, "console")
    try:
        if args.check:
            problem = schema_problem()
            print(problem or "the database schema is up to date")
            raise SystemExit(1 if problem else 0)
        applied = upgrade_to_heads()
    except SchemaError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"applied {', '.join(applied)}" if applied else "the database schema is up to date")


if __name__ == "__main__":
    main()
