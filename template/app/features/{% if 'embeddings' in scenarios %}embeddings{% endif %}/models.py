"""The `documents` and `document_chunks` tables: uploaded text and its embedded chunks."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, LargeBinary, String, Text, UniqueConstraint
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
