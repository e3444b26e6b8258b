"""Request and response bodies of the documents API."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.core.validation import StorableStr
from app.features.embeddings.models import DocumentStatus, SourceFormat

MAX_TITLE_LENGTH = 300
SEARCH_MAX_LIMIT = 50


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain some non-whitespace text")
    return value


NonBlankStr = Annotated[StorableStr, AfterValidator(_not_blank)]


class DocumentIn(BaseModel):
    """A document sent as JSON instead of a file upload."""

    title: NonBlankStr = Field(max_length=MAX_TITLE_LENGTH)
    text: NonBlankStr


class DocumentAccepted(BaseModel):
    id: uuid.UUID
    status: DocumentStatus
    job_id: uuid.UUID


class DocumentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    source_format: SourceFormat
    size_bytes: int
    status: DocumentStatus
    error: str | None
    job_id: uuid.UUID | None
    chunk_count: int
    embedding_model: str | None
    embedding_dimension: int | None
    created_at: datetime
    updated_at: datetime


class SearchRequest(BaseModel):
    query: NonBlankStr = Field(max_length=2000)
    limit: int = Field(default=5, ge=1, le=SEARCH_MAX_LIMIT)


class SearchHit(BaseModel):
    document_id: uuid.UUID
    chunk_index: int
    text: str
    score: float = Field(description="Cosine similarity between the query and the chunk")


class SearchResults(BaseModel):
    results: list[SearchHit]
