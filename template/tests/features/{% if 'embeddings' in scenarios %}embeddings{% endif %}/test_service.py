"""Processing stores a document's chunks; the in-memory index finds them without a restart."""

import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import select, update

from app.core.database import session_scope
from app.core.migrate import upgrade_to_heads
from app.features.embeddings import index, service
from app.features.embeddings.embedders import HashingEmbedder
from app.features.embeddings.models import Chunk, Document, DocumentStatus, SourceFormat
from app.features.embeddings.tasks import process_document
from app.features.embeddings.upload import Upload
from app.jobs.models import Job

EMBEDDER = HashingEmbedder(64)
MIN_SCORE = 0.1  # EMBEDDINGS_MIN_SCORE's default
ANY_SCORE = -1.0  # every chunk compared, however weak the match
Process = Callable[[uuid.UUID], dict[str, object]]
WORDS = " ".join(f"w{i:03d}" for i in range(100))  # 100 words of 4 letters: 499 characters


@pytest.fixture
def tables() -> None:
    upgrade_to_heads()


def new_document(text: str, source_format: SourceFormat = SourceFormat.TEXT) -> uuid.UUID:
    upload = Upload("doc", source_format, text, len(text.encode()))
    document_id, _ = service.create_document(upload, process_document)
    return document_id


@pytest.fixture
def process(tables: None) -> Process:
    def run(document_id: uuid.UUID) -> dict[str, object]:
        return service.process_document(
            document_id, EMBEDDER, chunk_size=50, overlap=10, batch_size=5
        )

    return run


def set_content(document_id: uuid.UUID, **values: object) -> None:
    with session_scope() as session:
        session.execute(update(Document).where(Document.id == document_id).values(**values))


def stored_chunks(document_id: uuid.UUID) -> list[tuple[int, str]]:
    with session_scope() as session:
        return [
            (row.chunk_index, row.text)
            for row in session.execute(
                select(Chunk.chunk_index, Chunk.text)
                .where(Chunk.document_id == document_id)
                .order_by(Chunk.chunk_index)
            )
        ]


def test_a_document_and_its_processing_job_commit_together(tables: None) -> None:
    upload = Upload("doc", SourceFormat.TEXT, WORDS, len(WORDS))

    document_id, job = service.create_document(upload, process_document)

    with session_scope() as session:
        document = session.get(Document, document_id)
        [row] = session.scalars(select(Job))
        assert document is not None
        assert (document.status, document.job_id) == (DocumentStatus.QUEUED, job.id)
        assert (row.id, row.kind, row.status) == (job.id, process_document.name, "queued")
        assert row.args == {"document_id": str(document_id)}


def test_processing_stores_one_vector_per_chunk_and_marks_ready(process: Process) -> None:
    document_id = new_document(WORDS)

    result = process(document_id)

    document = service.get_document(document_id)
    assert document is not None
    assert document.status == DocumentStatus.READY
    assert document.chunk_count == len(stored_chunks(document_id)) == 13
    assert (document.embedding_model, document.embedding_dimension) == ("hashing-blake2b-v1", 64)
    assert result == {
        "document_id": str(document_id),
        "chunk_count": 13,
        "embedding_model": "hashing-blake2b-v1",
        "embedding_dimension": 64,
    }


def test_processing_again_replaces_the_chunks_without_duplicates(process: Process) -> None:
    document_id = new_document(WORDS)
    process(document_id)
    first = stored_chunks(document_id)

    process(document_id)

    assert stored_chunks(document_id) == first
    with session_scope() as session:
        assert session.scalar(select(Document.generation).where(Document.id == document_id)) == 2


def test_search_sees_new_and_reprocessed_documents_without_a_restart(process: Process) -> None:
    bread = new_document("Knead the dough, let the bread rise, then bake it in a hot oven.")
    process(bread)
    assert index.search("bake bread", 1, EMBEDDER, MIN_SCORE)[0].document_id == bread

    volcano = new_document("Magma rises and the volcano erupts, pouring lava down its slopes.")
    process(volcano)
    assert index.search("volcano lava", 1, EMBEDDER, MIN_SCORE)[0].document_id == volcano

    set_content(bread, content="Chess openings: the Sicilian defence.")
    process(bread)
    best = index.search("chess openings", 1, EMBEDDER, MIN_SCORE)[0]
    assert (best.document_id, best.text) == (bread, "Chess openings: the Sicilian defence.")


def test_search_skips_documents_not_ready(process: Process) -> None:
    document_id = new_document("Photosynthesis turns sunlight into sugar in green leaves.")
    process(document_id)
    assert index.search("photosynthesis", 5, EMBEDDER, ANY_SCORE)

    # Being processed again: its old chunks are still stored until the new ones replace them.
    set_content(document_id, status=DocumentStatus.PROCESSING)

    assert index.search("photosynthesis", 5, EMBEDDER, ANY_SCORE) == []


def test_search_skips_documents_embedded_by_another_model(process: Process) -> None:
    process(new_document("Marathon training: long slow runs and rest days."))

    assert index.search("marathon", 5, HashingEmbedder(32), ANY_SCORE) == []
