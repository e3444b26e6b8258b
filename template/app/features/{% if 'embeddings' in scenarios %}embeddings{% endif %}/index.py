"""The vector index: ready documents' vectors held in memory, and cosine search over them."""

import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session

from app.core.database import get_sessionmaker
from app.features.embeddings.embedders import Embedder
from app.features.embeddings.metrics import SEARCH_SECONDS
from app.features.embeddings.models import Chunk, Document, DocumentStatus
from app.features.embeddings.schemas import SearchHit

VECTOR_DTYPE = np.dtype("<f4")  # how vectors are stored: float32, little-endian


T = TypeVar("T")


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of `size` items (itertools.batched needs Python 3.12)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def searchable_documents(model: str, dimension: int) -> ColumnElement[bool]:
    """Ready documents whose vectors compare with the query's: same model, same size."""
    return and_(
        Document.status == DocumentStatus.READY,
        Document.embedding_model == model,
        Document.embedding_dimension == dimension,
    )


@dataclass(frozen=True)
class Block:
    """The vectors of one ready document, as of one generation of its chunks."""

    generation: int
    chunk_ids: np.ndarray
    vectors: np.ndarray


@dataclass(frozen=True)
class Matrix:
    """Every searchable vector in one array, so a search is one matrix-vector product."""

    chunk_ids: np.ndarray
    vectors: np.ndarray

    @classmethod
    def of(cls, blocks: Iterable[Block], dimension: int) -> "Matrix":
        blocks = list(blocks)
        if not blocks:
            return cls(np.empty(0, np.int64), np.empty((0, dimension), VECTOR_DTYPE))
        return cls(
            np.concatenate([block.chunk_ids for block in blocks]),
            np.concatenate([block.vectors for block in blocks]),
        )

    def top(self, query: np.ndarray, limit: int, min_score: float) -> list[tuple[int, float]]:
        """(chunk id, cosine) of the best `limit` chunks scoring above `min_score`.

        Vectors are unit length, so the dot product is the cosine. A query sharing nothing
        with the chunks (stop words only: a zero vector) finds nothing, rather than noise.
        """
        scores = self.vectors @ query.astype(VECTOR_DTYPE)
        best = np.flatnonzero(scores > min_score)
        if len(best) > limit:
            best = best[np.argpartition(-scores[best], limit - 1)[:limit]]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(int(self.chunk_ids[i]), float(scores[i])) for i in best]


class VectorIndex:
    """Ready documents' vectors kept in memory; only documents whose chunks changed are reloaded.

    Reading 10,000 blobs per query would dominate search time. Each search compares the
    (id, generation) pairs of ready documents with what is held, which also picks up
    documents finished by another process (a Celery worker).
    """

    LOAD_BATCH = 500  # documents per IN (...) query

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._space: tuple[str, int] | None = None
        self._blocks: dict[uuid.UUID, Block] = {}
        self._matrix: Matrix | None = None

    def matrix(self, session: Session, model: str, dimension: int) -> Matrix:
        searchable = searchable_documents(model, dimension)
        ready = dict(
            session.execute(select(Document.id, Document.generation).where(searchable)).all()
        )
        with self._lock:
            if self._space != (model, dimension):
                self._space, self._blocks, self._matrix = (model, dimension), {}, None
            stale = [
                doc
                for doc, generation in ready.items()
                if doc not in self._blocks or self._blocks[doc].generation != generation
            ]
            gone = self._blocks.keys() - ready.keys()
            if stale or gone or self._matrix is None:
                for doc in gone:
                    del self._blocks[doc]
                self._blocks.update(self._load(session, stale, searchable, dimension))
                self._matrix = Matrix.of(self._blocks.values(), dimension)
            return self._matrix

    def _load(
        self,
        session: Session,
        documents: list[uuid.UUID],
        searchable: ColumnElement[bool],
        dimension: int,
    ) -> dict[uuid.UUID, Block]:
        rows: dict[uuid.UUID, list[tuple[int, int, bytes]]] = {}
        for group in batched(documents, self.LOAD_BATCH):
            # Chunks and generation come from one statement, hence from one committed state.
            result = session.execute(
                select(Chunk.document_id, Document.generation, Chunk.id, Chunk.embedding)
                .join(Document, Document.id == Chunk.document_id)
                .where(Chunk.document_id.in_(group), searchable)
                .order_by(Chunk.document_id, Chunk.chunk_index)
            )
            for doc, generation, chunk_id, blob in result:
                rows.setdefault(doc, []).append((generation, chunk_id, blob))
        return {
            doc: Block(
                generation=chunks[0][0],
                chunk_ids=np.array([chunk_id for _, chunk_id, _ in chunks], np.int64),
                vectors=np.frombuffer(b"".join(blob for *_, blob in chunks), VECTOR_DTYPE).reshape(
                    -1, dimension
                ),
            )
            for doc, chunks in rows.items()
        }


index = VectorIndex()


def search(query: str, limit: int, embedder: Embedder, min_score: float) -> list[SearchHit]:
    """The chunks of ready documents closest to `query` (scoring above `min_score`), best first."""
    started = time.perf_counter()
    vector = embedder.embed([query])[0]
    with get_sessionmaker()() as session:
        best = index.matrix(session, embedder.model, len(vector)).top(vector, limit, min_score)
        found = {
            row.id: row
            for row in session.execute(
                select(Chunk.id, Chunk.document_id, Chunk.chunk_index, Chunk.text).where(
                    Chunk.id.in_([chunk_id for chunk_id, _ in best])
                )
            )
        }
    SEARCH_SECONDS.observe(time.perf_counter() - started)
    # A chunk replaced since the matrix was read is gone: it is left out, not an error.
    return [
        SearchHit(
            document_id=found[chunk_id].document_id,
            chunk_index=found[chunk_id].chunk_index,
            text=found[chunk_id].text,
            score=score,
        )
        for chunk_id, score in best
        if chunk_id in found
    ]
