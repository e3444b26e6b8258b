"""Documents: their rows and lifecycle, batched embedding, and the chunks stored for search."""

import time
import uuid
from collections.abc import Sequence

import numpy as np
from sqlalchemy import delete, insert, update
from sqlalchemy.orm import Session

from app.core.database import get_sessionmaker, session_scope, utcnow
from app.core.events import announce
from app.features.embeddings.chunking import extract_text, split_into_chunks
from app.features.embeddings.embedders import Embedder
from app.features.embeddings.index import VECTOR_DTYPE, batched
from app.features.embeddings.metrics import CHUNKS_EMBEDDED, EMBED_BATCH_SECONDS
from app.features.embeddings.models import Chunk, Document, DocumentFeed, DocumentStatus
from app.features.embeddings.schemas import DocumentRead
from app.features.embeddings.upload import Upload
from app.jobs.models import JobStatus
from app.jobs.service import QueuedJob, get_job_store
from app.tasks import PermanentError, Task, stage


def create_document(upload: Upload, processing: Task) -> tuple[uuid.UUID, QueuedJob]:
    """Insert a `queued` document and the job that processes it (`processing`), in one transaction.

    Both commit or neither does: a crash cannot leave a document `queued` with no job.
    """
    document_id, now = uuid.uuid4(), utcnow()
    with session_scope() as session:
        job = stage(session, processing, document_id=str(document_id))
        session.add(
            Document(
                id=document_id,
                title=upload.title,
                source_format=upload.source_format,
                content=upload.text,
                size_bytes=upload.size_bytes,
                status=DocumentStatus.QUEUED,
                job_id=job.id,
                created_at=now,
                updated_at=now,
            )
        )
    return document_id, job


def get_document(document_id: uuid.UUID) -> DocumentRead | None:
    with get_sessionmaker()() as session:
        document = session.get(Document, document_id)
        if document is None:
            return None
        read = DocumentRead.model_validate(document)
    if read.status in {DocumentStatus.QUEUED, DocumentStatus.PROCESSING} and read.job_id:
        job = get_job_store().get(read.job_id)
        if job is not None and job.status == JobStatus.FAILED:
            # Retries ran out on a transient error: the job holds the last one.
            return read.model_copy(update={"status": DocumentStatus.FAILED, "error": job.error})
    return read


# --- Background processing ------------------------------------------------------------


def process_document(
    document_id: uuid.UUID, embedder: Embedder, chunk_size: int, overlap: int, batch_size: int
) -> dict[str, object]:
    """Parse, chunk, embed and store one document. Running it again replaces its chunks."""
    content, source_format = start_processing(document_id)
    try:
        chunks = split_into_chunks(extract_text(content, source_format), chunk_size, overlap)
        if not chunks:
            raise PermanentError("the document has no text left once its markup is removed")
        vectors = embed_in_batches(embedder, chunks, batch_size)
    except PermanentError as exc:
        finish_failed(document_id, str(exc))
        raise
    store_chunks(document_id, chunks, vectors, embedder.model)
    return {
        "document_id": str(document_id),
        "chunk_count": len(chunks),
        "embedding_model": embedder.model,
        "embedding_dimension": int(vectors.shape[1]),
    }


def start_processing(document_id: uuid.UUID) -> tuple[str, str]:
    with session_scope() as session:
        document = session.get(Document, document_id)
        if document is None:
            raise PermanentError(f"document {document_id} does not exist")
        document.status = DocumentStatus.PROCESSING
        document.error = None
        document.updated_at = utcnow()
        content, source_format = document.content, document.source_format
        # It leaves search until its new chunks are stored: indexes must hear of it.
        advance_feed(session, document_id)
        return content, source_format


def embed_in_batches(embedder: Embedder, texts: Sequence[str], batch_size: int) -> np.ndarray:
    blocks = []
    for batch in batched(texts, batch_size):
        started = time.perf_counter()
        block = embedder.embed(batch)
        EMBED_BATCH_SECONDS.labels(embedder.model).observe(time.perf_counter() - started)
        if block.ndim != 2 or len(block) != len(batch):
            raise PermanentError(f"{embedder.model!r} gave {block.shape} for {len(batch)} texts")
        CHUNKS_EMBEDDED.labels(embedder.model).inc(len(batch))
        blocks.append(block)
    if len({block.shape[1] for block in blocks}) != 1:
        raise PermanentError(f"{embedder.model!r} gave vectors of several sizes")
    return np.concatenate(blocks)


def store_chunks(
    document_id: uuid.UUID, chunks: Sequence[str], vectors: np.ndarray, model: str
) -> None:
    """Replace the document's chunks and mark it ready, in one transaction."""
    rows = [
        {
            "document_id": document_id,
            "chunk_index": index,
            "text": text,
            "embedding": vector.astype(VECTOR_DTYPE).tobytes(),
        }
        for index, (text, vector) in enumerate(zip(chunks, vectors, strict=True))
    ]
    with session_scope() as session:
        session.execute(delete(Chunk).where(Chunk.document_id == document_id))
        session.execute(insert(Chunk), rows)
        session.execute(
            update(Document)
            .where(Document.id == document_id)
            .values(
                status=DocumentStatus.READY,
                error=None,
                chunk_count=len(rows),
                embedding_model=model,
                embedding_dimension=int(vectors.shape[1]),
                generation=Document.generation + 1,
                updated_at=utcnow(),
            )
        )
        announce(
            session,
            "document.ready",
            {"id": str(document_id), "chunk_count": len(rows), "embedding_model": model},
        )
        advance_feed(session, document_id)


def finish_failed(document_id: uuid.UUID, error: str) -> None:
    with session_scope() as session:
        session.execute(
            update(Document)
            .where(Document.id == document_id)
            .values(status=DocumentStatus.FAILED, error=error, updated_at=utcnow())
        )
        announce(session, "document.failed", {"id": str(document_id), "error": error})
        advance_feed(session, document_id)


def advance_feed(session: Session, document_id: uuid.UUID) -> None:
    """Give the document the next feed position, so every search index reloads it.

    Call it last in the transaction: the feed's row stays locked from here to the commit,
    which makes positions visible in the order they are handed out (see `DocumentFeed`).
    """
    position = session.execute(
        update(DocumentFeed)
        .where(DocumentFeed.id == 1)
        .values(position=DocumentFeed.position + 1)
        .returning(DocumentFeed.position)
    ).scalar_one()
    session.execute(
        update(Document).where(Document.id == document_id).values(feed_position=position)
    )
