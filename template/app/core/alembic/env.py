"""Alembic environment: the service's DATABASE_URL, and every model on the shared metadata."""

from alembic import context
from sqlalchemy import Connection

from app.core.database import Base, create_db_engine
from app.core.migrate import import_models

config = context.config
import_models()
target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite alters a table by copying it: batch operations do that for it.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=False,
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
