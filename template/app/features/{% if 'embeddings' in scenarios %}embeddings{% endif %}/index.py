"""The search index: ready chunks' vectors held in memory, following the documents' change feed."""

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from usearch.index import Index

from app.core.config import get_settings
from app.core.database import get_sessionmaker
from app.features.embeddings.config import get_embeddings_settings
from app.features.embeddings.embedders import Embedder
from app.features.embeddings.metrics import SEARCH_SECONDS
from app.features.embeddings.models import Chunk, Document, DocumentFeed, DocumentStatus
from app.features.embeddings.schemas import SearchHit

logger = logging.getLogger(__name__)

VECTOR_DTYPE = np.dtype("<f4")  # how vectors are stored: float32, little-endian
FILE_FORMAT = 1  # bumped whenever the saved layout changes: older files are rebuilt
NO_KEYS = np.empty(0, np.int64)

# (database URL, its epoch, model, dimension): what an index's vectors belong to.
Space = tuple[str, str, str, int]

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


# --- Vector stores: exact below the threshold, approximate (HNSW) from it on --------------


class Store(Protocol):
    """Vectors by chunk id, and the nearest of them to a query."""

    def __len__(self) -> int: ...

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, keys: np.ndarray) -> None: ...

    def nearest(self, query: np.ndarray, count: int) -> np.ndarray:
        """Keys of (about) the `count` vectors of highest cosine with `query`, best first."""
        ...


class ExactStore:
    """Every vector in one float32 matrix: a search is one matrix-vector product."""

    def __init__(self, dimension: int) -> None:
        self.keys = np.empty(0, np.int64)
        self.vectors = np.empty((0, dimension), VECTOR_DTYPE)
        self.rows: dict[int, int] = {}  # chunk id -> its row
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        needed = self.size + len(keys)
        if needed > len(self.keys):  # grow by doubling: appends stay cheap on average
            capacity = max(needed, 2 * len(self.keys), 1024)
            self.keys = np.resize(self.keys, capacity)
            grown = np.zeros((capacity, self.vectors.shape[1]), VECTOR_DTYPE)
            grown[: self.size] = self.vectors[: self.size]
            self.vectors = grown
        self.keys[self.size : needed] = keys
        self.vectors[self.size : needed] = vectors
        self.rows.update(zip(keys.tolist(), range(self.size, needed), strict=True))
        self.size = needed

    def remove(self, keys: np.ndarray) -> None:
        for key in keys.tolist():
            row = self.rows.pop(key, None)
            if row is None:
                continue
            last = self.size - 1  # the last row moves into the hole
            if row != last:
                moved = int(self.keys[last])
                self.keys[row], self.vectors[row] = moved, self.vectors[last]
                self.rows[moved] = row
            self.size = last

    def nearest(self, query: np.ndarray, count: int) -> np.ndarray:
        scores = self.vectors[: self.size] @ query
        best = np.arange(len(scores))
        if len(scores) > count:
            best = np.argpartition(-scores, count - 1)[:count]
        return self.keys[best[np.argsort(-scores[best], kind="stable")]]


class AnnStore:
    """A usearch HNSW graph: a search visits a few thousand vectors instead of all of them."""

    def __init__(self, graph: Index) -> None:
        self.graph = graph

    @classmethod
    def empty(cls, dimension: int, dtype: str, expansion_search: int) -> "AnnStore":
        graph = Index(ndim=dimension, metric="cos", dtype=dtype, expansion_search=expansion_search)
        return cls(graph)

    def __len__(self) -> int:
        return len(self.graph)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if len(keys):
            self.graph.add(keys, vectors)

    def remove(self, keys: np.ndarray) -> None:
        if len(keys):
            self.graph.remove(keys)

    def nearest(self, query: np.ndarray, count: int) -> np.ndarray:
        keys: np.ndarray = self.graph.search(query, count).keys
        return keys


# --- The index: one per process, kept up to date from the documents' change feed --------


@dataclass
class State:
    """What one process holds for one space (database, model, dimension)."""

    space: Space
    store: Store
    position: int  # feed position caught up to: every change at or below it is applied
    # Each document's generation and chunk ids, to take its chunks out when it changes.
    documents: dict[uuid.UUID, tuple[int, np.ndarray]] = field(default_factory=dict)
    saved_at: float = field(default_factory=time.monotonic)


@dataclass
class Stats:
    """How the index got its vectors (for tests and the benchmark)."""

    builds: int = 0  # every chunk read from the database
    loads: int = 0  # a saved file used
    chunks_read: int = 0  # vectors read from the database, by builds and catch-ups


class VectorIndex:
    """Ready chunks' vectors: exact below `ann_threshold` chunks, an HNSW graph from it on.

    Each search first reads the feed's row (one primary-key read). When documents changed
    since the position this index reached, those documents are read with one indexed query
    on `documents.feed_position` and their chunks replaced: that is also how documents
    finished by other processes (Celery workers, other API processes) show up. The index is
    saved to `path` with its position, so a restart loads it and reads only what changed.
    Arguments left None come from the EMBEDDINGS_* settings.
    """

    LOAD_BATCH = 500  # documents per IN (...) query
    FEED_PAGE = 2000  # changed documents read at once

    def __init__(
        self,
        path: Path | None = None,
        threshold: int | None = None,
        dtype: str | None = None,
        expansion_search: int | None = None,
        save_seconds: float | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._state: State | None = None
        self._path, self._threshold, self._dtype = path, threshold, dtype
        self._expansion_search, self._save_seconds = expansion_search, save_seconds
        self.stats = Stats()

    @property
    def path(self) -> Path:
        settings = get_embeddings_settings()
        return self._path or settings.index_path or default_index_path()

    @property
    def threshold(self) -> int | None:
        """Chunks from which the graph takes over; None: never (see EmbeddingsSettings)."""
        if self._threshold is not None:
            return self._threshold
        return get_embeddings_settings().graph_threshold

    def __len__(self) -> int:
        return len(self._state.store) if self._state is not None else 0

    @property
    def approximate(self) -> bool:
        """Whether searches walk the HNSW graph (else they compare every vector)."""
        return self._state is not None and isinstance(self._state.store, AnnStore)

    def nearest(
        self, session: Session, query: np.ndarray, model: str, count: int
    ) -> tuple[list[int], object]:
        """Chunk ids of (about) the `count` nearest chunks to `query`, best first, as of now.

        Also a token naming the index's state, for `forget`.
        """
        with self._lock:
            state = self._catch_up(session, model, len(query))
            keys = state.store.nearest(query, count) if len(state.store) else NO_KEYS
            return keys.tolist(), (state, state.position)

    def forget(self, keys: Sequence[int], token: object) -> None:
        """Drop chunk ids a search found gone (a document deleted outright: no feed says so).

        Only while the index is as it was when it named them (`token`): after a catch-up,
        an id SQLite reused for a new chunk must not be dropped for its old owner's sake.
        """
        with self._lock:
            state = self._state
            if keys and state is not None and token == (state, state.position):
                state.store.remove(np.array(keys, np.int64))

    def save(self) -> None:
        """Save the index now (it also saves itself after a build, then every so often)."""
        with self._lock:
            if self._state is not None:
                self._save(self._state)

    # --- Keeping up with the database ------------------------------------------------

    def _catch_up(self, session: Session, model: str, dimension: int) -> State:
        epoch, position = database_feed(session)
        space = (session.get_bind().engine.url.render_as_string(), epoch, model, dimension)
        state = self._state
        # A feed behind the index: the database was restored from an older copy.
        if state is None or state.space != space or position < state.position:
            state = self._state = self._load(space, position) or self._build(session, space)
        if position > state.position:
            self._apply_changes(session, state)
            self._grow_into_graph(state)
            save_seconds = (
                get_embeddings_settings().index_save_seconds
                if self._save_seconds is None
                else self._save_seconds
            )
            if time.monotonic() - state.saved_at >= save_seconds:
                state.saved_at = time.monotonic()
                threading.Thread(target=self._save_later, args=(state,), daemon=True).start()
        return state

    def _apply_changes(self, session: Session, state: State) -> None:
        _, _, model, dimension = state.space
        searchable = searchable_documents(model, dimension)
        while True:
            changed = session.execute(
                select(Document.id, Document.feed_position)
                .where(Document.feed_position > state.position)
                .order_by(Document.feed_position)
                .limit(self.FEED_PAGE)
            ).all()
            if not changed:
                return
            ids = [doc for doc, _ in changed]
            for doc in ids:
                _, keys = state.documents.pop(doc, (0, NO_KEYS))
                state.store.remove(keys)
            self._add_documents(session, state, ids, searchable)
            state.position = changed[-1][1]

    def _add_documents(
        self,
        session: Session,
        state: State,
        documents: Sequence[uuid.UUID],
        searchable: ColumnElement[bool],
    ) -> None:
        """Add the chunks of those of `documents` that are searchable now."""
        dimension = state.space[3]
        for group in batched(documents, self.LOAD_BATCH):
            # Chunks and generation come from one statement, hence from one committed state.
            rows = session.execute(
                select(Chunk.document_id, Document.generation, Chunk.id, Chunk.embedding)
                .join(Document, Document.id == Chunk.document_id)
                .where(Chunk.document_id.in_(group), searchable)
                .order_by(Chunk.document_id, Chunk.chunk_index)
            ).all()
            if not rows:
                continue
            keys = np.array([row[2] for row in rows], np.int64)
            vectors = np.frombuffer(b"".join(row[3] for row in rows), VECTOR_DTYPE)
            starts = [0, *(i for i in range(1, len(rows)) if rows[i][0] != rows[i - 1][0])]
            for start, end in zip(starts, [*starts[1:], len(rows)], strict=True):
                doc, generation = rows[start][0], rows[start][1]
                _, old = state.documents.pop(doc, (0, NO_KEYS))
                state.store.remove(old)  # a build's catch-up may meet a document twice
                state.documents[doc] = (generation, keys[start:end])
            state.store.add(keys, vectors.reshape(-1, dimension))
            self.stats.chunks_read += len(keys)

    def _grow_into_graph(self, state: State) -> None:
        """Past the threshold, the exact store's vectors move into an HNSW graph (once)."""
        store = state.store
        threshold = self.threshold
        if isinstance(store, ExactStore) and threshold is not None and len(store) >= threshold:
            graph = self._new_graph(state.space[3])
            graph.add(store.keys[: len(store)], store.vectors[: len(store)])
            state.store = graph

    def _new_graph(self, dimension: int) -> AnnStore:
        settings = get_embeddings_settings()
        return AnnStore.empty(
            dimension,
            self._dtype or settings.ann_dtype,
            self._expansion_search or settings.ann_expansion_search,
        )

    def _build(self, session: Session, space: Space) -> State:
        """Every searchable chunk read from the database, then saved for the next start."""
        _, _, model, dimension = space
        _, position = database_feed(session)
        store: Store = self._new_graph(dimension) if self.threshold == 0 else ExactStore(dimension)
        state = State(space, store, position)
        searchable = searchable_documents(model, dimension)
        # Documents changed after `position` are read again by the next catch-up.
        documents = session.scalars(select(Document.id).where(searchable)).all()
        for group in batched(documents, self.LOAD_BATCH):
            self._add_documents(session, state, group, searchable)
            self._grow_into_graph(state)
        self.stats.builds += 1
        self._save(state)
        return state

    # --- Saving and loading --------------------------------------------------------------

    def _save_later(self, state: State) -> None:
        with self._lock:
            if self._state is state:
                self._save(state)

    def _save(self, state: State) -> None:
        """Write the vectors, then the file naming them: a reader sees old or new, never half."""
        path = self.path
        token = uuid.uuid4().hex[:12]
        data = path.with_name(f"{path.name}.{token}")
        _, epoch, model, dimension = state.space
        header = {
            "format": FILE_FORMAT,
            "epoch": epoch,
            "model": model,
            "dimension": dimension,
            "position": state.position,
            "kind": "exact" if isinstance(state.store, ExactStore) else "hnsw",
            "data": data.name,
        }
        documents = list(state.documents.items())
        old = read_header(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            store = state.store
            if isinstance(store, ExactStore):
                with data.open("wb") as out:
                    np.save(out, store.vectors[: len(store)])
                    np.save(out, store.keys[: len(store)])
            else:
                assert isinstance(store, AnnStore)
                store.graph.save(str(data))
            temporary = path.with_name(f"{path.name}.{token}.tmp")
            with temporary.open("wb") as out:
                np.savez(
                    out,
                    header=np.array(json.dumps(header)),
                    # uint8 rows, not "S16": numpy strips a bytes value's trailing NULs.
                    ids=np.frombuffer(
                        b"".join(doc.bytes for doc, _ in documents), np.uint8
                    ).reshape(-1, 16),
                    generations=np.array([gen for _, (gen, _) in documents], np.int64),
                    counts=np.array([len(keys) for _, (_, keys) in documents], np.int64),
                    keys=np.concatenate([keys for _, (_, keys) in documents] or [NO_KEYS]),
                )
                out.flush()
                os.fsync(out.fileno())
            temporary.replace(path)
        except OSError as exc:
            # Search goes on from memory; the next start reads the database again.
            logger.warning("cannot save the search index to %s: %s", path, exc)
            data.unlink(missing_ok=True)
            return
        if old is not None and isinstance(old.get("data"), str) and old["data"] != data.name:
            path.with_name(old["data"]).unlink(missing_ok=True)

    def _load(self, space: Space, position: int) -> State | None:
        """The saved index if it was saved for this database, model and dimension, else None."""
        _, epoch, model, dimension = space
        path = self.path
        header = read_header(path)
        expected = {"format": FILE_FORMAT, "epoch": epoch, "model": model, "dimension": dimension}
        if header is None or header != header | expected:
            return None  # none yet, or saved for another database, model or dimension
        saved_position = header.get("position")
        if not isinstance(saved_position, int) or saved_position > position:
            return None  # ahead of the database: saved before it was restored from a copy
        try:
            with np.load(path, allow_pickle=False) as saved:
                ids, generations = saved["ids"], saved["generations"]
                counts, keys = saved["counts"], saved["keys"]
            data = path.with_name(str(header["data"]))
            store: Store
            if header["kind"] == "exact":
                with data.open("rb") as file:
                    vectors = np.load(file, allow_pickle=False)
                    stored_keys = np.load(file, allow_pickle=False)
                if vectors.shape != (len(stored_keys), dimension):
                    raise ValueError(f"{vectors.shape} vectors for {len(stored_keys)} keys")
                store = ExactStore(dimension)
                store.add(stored_keys, vectors)
            else:
                expansion = self._expansion_search or get_embeddings_settings().ann_expansion_search
                graph = Index.restore(str(data), expansion_search=expansion)
                if graph is None or graph.ndim != dimension:
                    raise ValueError(f"{data.name} is not a graph of {dimension} dimensions")
                store = AnnStore(graph)
            parts = np.split(keys, np.cumsum(counts)[:-1]) if len(counts) else []
            documents = {
                uuid.UUID(bytes=doc.tobytes()): (int(generation), part)
                for doc, generation, part in zip(ids, generations, parts, strict=True)
            }
        except Exception as exc:  # a damaged file costs a rebuild, never a failed search
            logger.warning("search index %s is unusable, rebuilding it: %s", path, exc)
            return None
        self.stats.loads += 1
        return State(space, store, saved_position, documents)


def read_header(path: Path) -> dict[str, Any] | None:
    """The header of a saved index, or None when there is none or it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            header = json.loads(str(saved["header"]))
    except Exception:  # missing, truncated, or not ours at all
        return None
    return header if isinstance(header, dict) else None


def database_feed(session: Session) -> tuple[str, int]:
    """This database's identity (epoch) and the last feed position handed out."""
    row = session.execute(select(DocumentFeed.epoch, DocumentFeed.position)).one()
    if row.epoch is None:  # made by create_all rather than the migration: draw it once
        session.execute(
            update(DocumentFeed)
            .where(DocumentFeed.id == 1, DocumentFeed.epoch.is_(None))
            .values(epoch=uuid.uuid4().hex)
        )
        session.commit()
        row = session.execute(select(DocumentFeed.epoch, DocumentFeed.position)).one()
    return str(row.epoch), int(row.position)


def default_index_path() -> Path:
    """Next to the SQLite database file; data/embeddings.index with another database."""
    url = make_url(get_settings().database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = Path(str(url.database))
        return database.with_name(database.name + ".embeddings-index")
    return Path("data") / "embeddings.index"


index = VectorIndex()


def candidates_for(limit: int) -> int:
    """How many chunks to score exactly for `limit` results."""
    return 4 * limit + 20


def search(
    query: str, limit: int, embedder: Embedder, min_score: float, vectors: VectorIndex = index
) -> list[SearchHit]:
    """The chunks of ready documents closest to `query` (scoring above `min_score`), best first.

    `vectors`: this process's index unless given another (tests, the benchmark).
    """
    started = time.perf_counter()
    vector = embedder.embed([query])[0].astype(VECTOR_DTYPE)
    with get_sessionmaker()() as session:
        # More candidates than asked for: the graph ranks by vectors it holds at lower
        # precision, and some may belong to a document deleted meanwhile.
        candidates, token = vectors.nearest(session, vector, embedder.model, candidates_for(limit))
        # Two primary-key lookups, not a join: SQLite would plan that join from the status
        # index, reading every ready document's chunks (68 ms at 100,000 chunks).
        chunks = session.execute(
            select(
                Chunk.id, Chunk.document_id, Chunk.chunk_index, Chunk.text, Chunk.embedding
            ).where(Chunk.id.in_(candidates))
        ).all()
        searchable = set(
            session.scalars(
                select(Document.id).where(
                    Document.id.in_({row.document_id for row in chunks}),
                    searchable_documents(embedder.model, len(vector)),
                )
            )
        )
    rows = [row for row in chunks if row.document_id in searchable]
    found = {row.id for row in rows}
    if gone := [key for key in candidates if key not in found]:
        vectors.forget(gone, token)
    # Exact scores from the stored float32 vectors, best first (ties: the older chunk).
    scored = sorted(
        ((float(np.frombuffer(row.embedding, VECTOR_DTYPE) @ vector), row) for row in rows),
        key=lambda pair: (-pair[0], pair[1].id),
    )
    SEARCH_SECONDS.observe(time.perf_counter() - started)
    return [
        SearchHit(
            document_id=row.document_id, chunk_index=row.chunk_index, text=row.text, score=score
        )
        for score, row in scored[:limit]
        if score > min_score
    ]
