"""The database layer: tables are created once, whoever else is starting at the same moment."""

from typing import Any

from sqlalchemy import create_engine, event, inspect

from app.core.database import Base, get_engine, init_db
from app.jobs.models import Job


def test_tables_another_process_creates_meanwhile_do_not_stop_start_up() -> None:
    # A worker starting beside the API on this test's empty database: it creates the
    # tables between this process's look for them and its own CREATE TABLE.
    other_process = create_engine(get_engine().url)
    raced: list[str] = []

    def create_first(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().startswith("CREATE TABLE") and not raced:
            raced.append(statement)
            Base.metadata.create_all(other_process)

    event.listen(get_engine(), "before_cursor_execute", create_first)
    init_db()

    assert raced, "the race was not staged"
    assert Job.__tablename__ in inspect(get_engine()).get_table_names()
    other_process.dispose()
