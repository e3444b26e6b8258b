"""Documents: text extraction, overlapping chunks, batched embedding, storage and cosine search."""

import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from sqlalchemy import ColumnElement, and_, delete, insert, select, update
from sqlalchemy.orm import Session

from app.core.database import get_sessionmaker, session_scope, utcnow
from app.features.embeddings.embedders import Embedder
from app.features.embeddings.metrics import CHUNKS_EMBEDDED, EMBED_BATCH_SECONDS, SEARCH_SECONDS
from app.features.embeddings.models import Chunk, Document, DocumentStatus, SourceFormat
from app.features.embeddings.schemas import DocumentRead, SearchHit
from app.features.embeddings.upload import Upload
from app.jobs.models import JobStatus
from app.jobs.service import get_job_store
from app.tasks import PermanentError

VECTOR_DTYPE = np.dtype("<f4")  # how vectors are stored: float32, little-endian


T = TypeVar("T")


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of `size` items (itertools.batched needs Python 3.12)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- Text -----------------------------------------------------------------------------

# Markdown syntax that is not prose: removed (or reduced to its text) before chunking, so
# chunks shown in search results read as text and markup does not weigh in the vectors.
MARKDOWN_RULES = [
    (re.compile(r"^ {0,3}(```|~~~).*$", re.M), ""),  # code fences (the code stays)
    (re.compile(r"^ {0,3}([-*_])( *\1){2,} *$", re.M), ""),  # horizontal rules
    (re.compile(r"^ {0,3}\[[^\]]+\]: +\S+.*$", re.M), ""),  # link reference definitions
    (re.compile(r"^ *\|?( *:?-+:? *\|)+ *(:?-+:?)? *$", re.M), ""),  # table delimiter rows
    (re.compile(r"^ {0,3}#{1,6} +", re.M), ""),  # heading markers
    (re.compile(r"^ {0,3}> ?", re.M), ""),  # block quotes
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images: their alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links: their text
    (re.compile(r"`([^`\n]+)`"), r"\1"),  # inline code
    (re.compile(r"(\*\*|~~)(\S(?:.*?\S)?)\1"), r"\2"),  # **bold**, ~~strikethrough~~
    (re.compile(r"(?<![\w*])\*(\S(?:.*?\S)?)\*(?![\w*])"), r"\1"),  # *emphasis*
    # Underscores count only at word edges, as in CommonMark: snake_case stays.
    (re.compile(r"(?<!\w)(__?)(\S(?:.*?\S)?)\1(?!\w)"), r"\2"),  # __bold__, _emphasis_
    (re.compile(r"</?[A-Za-z][^>\n]*>"), ""),  # inline HTML tags
    (re.compile(r" *\| *"), " "),  # table cell separators
]
CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")  # tab, newline and the like are kept
SPACES = re.compile(r"[^\S\n]+")


def normalise(text: str) -> str:
    """NFC, `\\n` line ends, single spaces, at most one blank line in a row, no edge spaces."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = SPACES.sub(" ", CONTROL.sub("", text))
    lines = [line.strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def extract_text(content: str, source_format: str) -> str:
    """The prose of a document, normalised."""
    if source_format == SourceFormat.MARKDOWN:
        for pattern, replacement in MARKDOWN_RULES:
            content = pattern.sub(replacement, content)
    return normalise(content)


WHITESPACE = re.compile(r"\s+")
# Where a chunk prefers to end, best first: a paragraph, a line, a sentence, a word.
BREAKS = ("\n\n", "\n", ". ", " ")


def split_into_chunks(text: str, size: int, overlap: int) -> list[str]:
    """Chunks of at most `size` characters, each repeating about `overlap` characters of the last.

    Chunks end at the best break in their second half and start on a word, so words are
    cut only when a word is longer than half a chunk.
    """
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = start + size
        if end >= len(text):
            chunks.append(text[start:].strip())
            break
        cut = end
        for mark in BREAKS:
            found = text.rfind(mark, start + size // 2, end + 1)
            if found != -1:
                cut = found + (1 if mark == ". " else 0)  # keep the full stop
                break
        chunks.append(text[start:cut].strip())
        start = max(cut - overlap, start + 1)
        if not text[start - 1].isspace():
            boundary = WHITESPACE.search(text, start, cut)  # begin on the next word
            if boundary:
                start = boundary.end()
    return [chunk for chunk in chunks if chunk]


# --- Documents ------------------------------------------------------------------------


def create_document(upload: Upload) -> uuid.UUID:
    now = utcnow()
    with session_scope() as session:
        document = Document(
            title=upload.title,
            source_format=upload.source_format,
            content=upload.text,
            size_bytes=upload.size_bytes,
            status=DocumentStatus.QUEUED,
            created_at=now,
            updated_at=now,
        )
        session.add(document)
        session.flush()
        return document.id


def attach_job(document_id: uuid.UUID, job_id: uuid.UUID) -> None:
    with session_scope() as session:
        session.execute(update(Document).where(Document.id == document_id).values(job_id=job_id))


def delete_document(document_id: uuid.UUID) -> None:
    with session_scope() as session:
        session.execute(delete(Document).where(Document.id == document_id))


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
        return document.content, document.source_format


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


def finish_failed(document_id: uuid.UUID, error: str) -> None:
    with session_scope() as session:
        session.execute(
            update(Document)
            .where(Document.id == document_id)
            .values(status=DocumentStatus.FAILED, error=error, updated_at=utcnow())
        )


# --- Search ---------------------------------------------------------------------------


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
