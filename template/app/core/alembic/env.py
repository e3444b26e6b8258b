"""Alembic environment: the service's DATABASE_URL, and every model on the shared metadata."""

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

from app.core.database import Base, UtcDateTime, create_db_engine
from app.core.migrate import import_models

config = context.config
import_models()
target_metadata = Base.metadata


def render_item(kind: str, obj: Any, autogen: AutogenContext) -> str | Literal[False]:
    """Autogenerate writes the core's column types as importable names, not `app.core...`."""
    if kind == "type" and isinstance(obj, UtcDateTime):
        autogen.imports.add("from app.core.database import UtcDateTime")
        return "UtcDateTime()"
    return False


def include_name(name: str | None, kind: str, _parents: Any) -> bool:
    """Compare only tables some model declares.

    A removed scenario's tables stay in the database with their rows (on purpose), and
    other software may share it: autogenerate must not offer to drop them. Dropping a
    table is a revision written by hand.
    """
    return kind != "table" or name in target_metadata.tables


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite alters a table by copying it: batch operations do that for it.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    # `upgrade_to_heads` passes the connection it holds the lock on; the alembic command line
    # connects here, to DATABASE_URL as the service reads it (environment, then .env).
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    from app.core.config import get_settings

    engine = create_db_engine(get_settings().database_url)
    try:
        with engine.connect() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against the database")
run_online()
