"""The `documents` and `document_chunks` tables, and `document_feed`: what search indexes follow."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    DDL,
    BigInteger,
    ForeignKey,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.database import Base, UtcDateTime


class DocumentStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class SourceFormat(StrEnum):
    TEXT = "text"
    MARKDOWN = "markdown"


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(String(300))
    source_format: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[uuid.UUID | None]
    chunk_count: Mapped[int] = mapped_column(default=0)
    embedding_model: Mapped[str | None] = mapped_column(String(200))
    embedding_dimension: Mapped[int | None]
    # Bumped in the transaction that replaces the chunks, so a search index held in memory
    # knows exactly which documents it must reload.
    generation: Mapped[int] = mapped_column(default=0)
    # Position in the change feed (`DocumentFeed`): set from its counter by every transaction
    # that changes what search may return of this document, so an index catches up by
    # reading only the documents above the position it has reached (one indexed query).
    feed_position: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0", index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Last on purpose: SQLite stores a long value in overflow pages and reaches the columns
    # after it only through them, which would make every status query read every document.
    content: Mapped[str] = mapped_column(Text)


class Chunk(Base):
    __tablename__ = "document_chunks"
    __table_args__ = (UniqueConstraint("document_id", "chunk_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The unique constraint's index also serves lookups by document.
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    chunk_index: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    # float32, little-endian: the vector as numpy wrote it (no sqlite-vec/pgvector needed).
    embedding: Mapped[bytes] = mapped_column(LargeBinary)


class DocumentFeed(Base):
    """One row: the last feed position handed out, and this database's identity.

    A transaction changing a document takes the next position by incrementing `position` as
    its last statement. The row stays locked until that transaction commits, so positions
    become visible in the order they were handed out (on PostgreSQL as on SQLite, whose
    writers take turns anyway): an index that read up to position N never misses a later
    commit of a position at or below N.
    `epoch` is set once, at random: an index saved to disk for another database (a test's,
    a copy's) is told apart and rebuilt instead of trusted.
    """

    __tablename__ = "document_feed"

    id: Mapped[int] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    epoch: Mapped[str | None] = mapped_column(String(32))


# The row exists from the table's creation on (the migration inserts it too); the epoch is
# drawn by the first index that needs it (see index.database_epoch).
event.listen(
    DocumentFeed.__table__,
    "after_create",
    DDL("INSERT INTO document_feed (id, position) VALUES (1, 0)"),
)
