"""The `users` table: who signed up, and whether their welcome email went out."""

import uuid
from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.database import Base, UtcDateTime


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lowercased; the unique constraint (not a pre-check) is what stops two
    # concurrent sign-ups with the same address, so it holds under any race.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    welcome_email_job_id: Mapped[uuid.UUID | None]
    # Claimed (set only while unset) before the welcome email's first byte goes out, and
    # cleared when the server certainly did not take it: a run finding it set without
    # `welcome_email_sent_at` cannot know whether the email arrived, so it sends nothing.
    welcome_email_sending_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Set once the SMTP server accepted the welcome email; a rerun of the job skips it.
    welcome_email_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
