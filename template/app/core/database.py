"""SQLAlchemy engine, sessions and the declarative base every feature's models share."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy import DateTime, Dialect, Engine, TypeDecorator, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from app.core.config import get_settings


def utcnow() -> datetime:
    """The time every stored timestamp uses: timezone-aware UTC."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that comes back timezone-aware UTC, also from SQLite (which drops the zone).

    Store UTC (`utcnow()`): SQLite keeps the clock fields as given. No conversion on the way
    in, on purpose: every job write carries timestamps, and a bind hook costs each of them.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Base class of every table; migrations (app/core/migrate.py) create what is registered on it."""


SQLITE_READONLY = 8  # the primary result code, whatever the extended one says
READ_ONLY_SQL_TRANSACTION = "25006"  # PostgreSQL's SQLSTATE


def cannot_write(error: BaseException) -> bool:
    """Whether a driver error says this connection may not write to the database."""
    if getattr(error, "sqlite_errorcode", 0) & 0xFF == SQLITE_READONLY:
        return True
    return getattr(error, "sqlstate", None) == READ_ONLY_SQL_TRANSACTION


def replace_read_only_connections(context: ExceptionContext) -> None:
    """Treat a connection that may not write as lost, so the pool opens fresh ones.

    Why: a connection opened while the database was read-only stays so after it is
    writable again (SQLite opens an unwritable file read-only for good; a PostgreSQL
    session keeps the default_transaction_read_only it started with). Pre-ping does not
    notice, and a pool of such connections fails a share of writes until a restart.
    """
    if cannot_write(context.original_exception):
        context.is_disconnect = True  # invalidates this connection and the older ones


def create_db_engine(url: str) -> Engine:
    """Engine for `url`: SQLite gets WAL and a busy timeout, others a pre-ping pool."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, pool_pre_ping=True)
        event.listen(engine, "handle_error", replace_read_only_connections)
        return engine
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    event.listen(engine, "handle_error", replace_read_only_connections)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers run while the job writer commits; NORMAL sync is durable
        # across process crashes in WAL mode, which is what a restart needs.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


@lru_cache
def get_engine() -> Engine:
    return create_db_engine(get_settings().database_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session for work outside a request (units of work, start-up): commits or rolls back."""
    with get_sessionmaker().begin() as session:
        yield session


def get_session() -> Iterator[Session]:
    with get_sessionmaker()() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def reset_database_state() -> None:
    """Forget the cached engine (after a fork, or when tests change DATABASE_URL)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
