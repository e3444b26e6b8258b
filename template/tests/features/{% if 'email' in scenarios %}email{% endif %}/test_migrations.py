"""The email scenario's revisions: its newest one downgrades only when that loses nothing."""

import pytest
from alembic import command
from alembic.util import CommandError
from sqlalchemy import inspect, update

from app.core.database import get_engine, session_scope, utcnow
from app.core.migrate import alembic_config, upgrade_to_heads
from app.features.email import service
from app.features.email.models import User
from app.features.email.tasks import send_welcome


def columns() -> set[str]:
    return {column["name"] for column in inspect(get_engine()).get_columns("users")}


def test_downgrade_refuses_to_drop_a_claim_in_use_and_drops_it_once_cleared() -> None:
    upgrade_to_heads()
    user, _ = service.create_user("ada@example.com", "Ada", send_welcome)
    with session_scope() as session:
        session.execute(update(User).values(welcome_email_sending_at=utcnow()))

    with pytest.raises(CommandError, match=r"users\.welcome_email_sending_at: some rows have"):
        command.downgrade(alembic_config(), "email@-1")
    assert "welcome_email_sending_at" in columns()

    with session_scope() as session:
        session.execute(update(User).values(welcome_email_sending_at=None))
    command.downgrade(alembic_config(), "email@-1")
    assert "welcome_email_sending_at" not in columns()

    upgrade_to_heads()  # and back, the row intact
    assert "welcome_email_sending_at" in columns()
    with session_scope() as session:
        assert session.get(User, user.id) is not None
