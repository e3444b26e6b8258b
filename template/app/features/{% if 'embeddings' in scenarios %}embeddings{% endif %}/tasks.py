"""Units of work of the embeddings feature."""

import uuid

from app.features.embeddings import service
from app.features.embeddings.config import get_embeddings_settings
from app.features.embeddings.embedders import get_embedder
from app.tasks import task


# Sync on purpose: hashing and HTTP calls run in a worker thread, never on the event loop.
@task("embeddings.process_document")
def process_document(document_id: str) -> dict[str, object]:
    """Parse, chunk, embed and store a document; a rerun replaces its chunks."""
    settings = get_embeddings_settings()
    return service.process_document(
        uuid.UUID(document_id),
        get_embedder(),
        chunk_size=settings.chunk_size,
        overlap=settings.chunk_overlap,
        batch_size=settings.batch_size,
    )
