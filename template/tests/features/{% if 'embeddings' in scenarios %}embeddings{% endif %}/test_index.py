"""The search index: HNSW above the threshold, kept up to date from the feed, saved and reloaded."""

import random
import uuid
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from app.core.database import session_scope
from app.core.migrate import upgrade_to_heads
from app.features.embeddings import service
from app.features.embeddings.embedders import HashingEmbedder
from app.features.embeddings.index import VectorIndex, search
from app.features.embeddings.models import Document, DocumentFeed, SourceFormat
from app.features.embeddings.tasks import process_document
from app.features.embeddings.upload import Upload
from bench.embeddings import synthetic_chunks, vocabulary

EMBEDDER = HashingEmbedder(64)
ANY_SCORE = -1.0  # every chunk compared, however weak the match
EXACT = 10**9  # a threshold no test corpus reaches: the index compares every vector
BREAD = "Knead the dough, let the bread rise, then bake it in a hot oven."
ZERO_ENDED = uuid.UUID("12345678-1234-4234-8234-123456789a00")
VOLCANO = "Magma rises and the volcano erupts, pouring lava down its slopes."


@pytest.fixture(autouse=True)
def tables() -> None:
    upgrade_to_heads()


def store(chunks: list[str]) -> uuid.UUID:
    """A ready document made of exactly these chunks, as processing stores them."""
    text = "\n\n".join(chunks)
    upload = Upload("doc", SourceFormat.TEXT, text, len(text.encode()))
    document_id, _ = service.create_document(upload, process_document)
    service.start_processing(document_id)
    service.store_chunks(document_id, chunks, EMBEDDER.embed(chunks), EMBEDDER.model)
    return document_id


def found(vectors: VectorIndex, query: str, limit: int = 5) -> list[tuple[uuid.UUID, str]]:
    return [
        (hit.document_id, hit.text) for hit in search(query, limit, EMBEDDER, ANY_SCORE, vectors)
    ]


def test_the_graph_finds_what_comparing_every_vector_finds(tmp_path: Path) -> None:
    rng = random.Random(7)
    words = vocabulary(rng, 3000)
    chunks = synthetic_chunks(3000, 300, words, rng)
    for first in range(0, len(chunks), 100):
        store(chunks[first : first + 100])
    graph = VectorIndex(tmp_path / "graph", threshold=0)
    exact = VectorIndex(tmp_path / "exact", threshold=EXACT)
    # A user quoting a passage: a few consecutive words of a stored chunk.
    queries = []
    for chunk in rng.sample(chunks, 50):
        chunk_words = chunk.split()
        start = rng.randrange(len(chunk_words) - 8)
        queries.append(" ".join(chunk_words[start : start + 8]))

    shared = sum(len(set(found(graph, q, 10)) & set(found(exact, q, 10))) for q in queries)

    assert graph.approximate and not exact.approximate
    assert len(graph) == len(exact) == 3000
    assert shared / (10 * len(queries)) >= 0.95


@pytest.mark.parametrize("threshold", [0, EXACT], ids=["graph", "exact"])
def test_two_indexes_see_each_others_new_chunks(tmp_path: Path, threshold: int) -> None:
    """Two processes' indexes over one database: each finds what the other's process stored."""
    api = VectorIndex(tmp_path / "api.index", threshold=threshold)
    other = VectorIndex(tmp_path / "other.index", threshold=threshold)
    bread = store([BREAD])
    assert found(api, "bake bread")[0][0] == found(other, "bake bread")[0][0] == bread

    volcano = store([VOLCANO])

    assert found(api, "volcano lava")[0][0] == found(other, "volcano lava")[0][0] == volcano
    assert api.stats.builds == other.stats.builds == 1  # caught up, not rebuilt


@pytest.mark.parametrize("threshold", [0, EXACT], ids=["graph", "exact"])
def test_a_restart_answers_from_the_saved_index(
    tmp_path: Path, threshold: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "search.index"
    # An id ending in a zero byte, which the saved file must keep (numpy's "S16" drops it).
    monkeypatch.setattr(uuid, "uuid4", lambda: ZERO_ENDED)
    bread = store([BREAD])
    monkeypatch.undo()
    before = VectorIndex(path, threshold=threshold)
    assert found(before, "bake bread")[0][0] == bread  # built and saved
    tides = store(["The moon pulls the oceans into two tides a day."])

    restarted = VectorIndex(path, threshold=threshold)

    assert found(restarted, "moon tides")[0][0] == tides
    assert found(restarted, "bake bread")[0][0] == bread
    assert (restarted.stats.loads, restarted.stats.builds) == (1, 0)
    assert restarted.stats.chunks_read == 1  # only the chunk stored since the save
    assert len(restarted) == 2


def test_a_damaged_saved_index_is_rebuilt_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "search.index"
    bread = store([BREAD])
    found(VectorIndex(path, threshold=0), "bread")
    path.write_bytes(path.read_bytes()[:100])

    restarted = VectorIndex(path, threshold=0)

    assert found(restarted, "bake bread")[0][0] == bread
    assert (restarted.stats.loads, restarted.stats.builds) == (0, 1)
    reloaded = VectorIndex(path, threshold=0)  # the rebuilt index was saved in its place
    assert found(reloaded, "bake bread")[0][0] == bread
    assert (reloaded.stats.loads, reloaded.stats.builds) == (1, 0)


def test_an_index_saved_for_another_database_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "search.index"
    store([BREAD])
    found(VectorIndex(path, threshold=0), "bread")
    # Another database behind the same file (its own epoch): none of those chunks exist.
    with session_scope() as session:
        session.execute(delete(Document))
        session.execute(update(DocumentFeed).values(epoch=uuid.uuid4().hex))
    tides = store(["The moon pulls the oceans into two tides a day."])

    restarted = VectorIndex(path, threshold=0)

    assert [document for document, _ in found(restarted, "bread tides")] == [tides]
    assert restarted.stats.builds == 1


@pytest.mark.parametrize("threshold", [0, EXACT], ids=["graph", "exact"])
def test_a_replaced_or_deleted_document_leaves_the_results(tmp_path: Path, threshold: int) -> None:
    vectors = VectorIndex(tmp_path / "search.index", threshold=threshold)
    bread = store([BREAD])
    volcano = store([VOLCANO])
    assert found(vectors, "bread")[0][0] == bread

    service.start_processing(bread)  # being processed again: out of search meanwhile
    assert bread not in {document for document, _ in found(vectors, "bake bread")}
    chess = ["Chess openings: the Sicilian defence."]
    service.store_chunks(bread, chess, EMBEDDER.embed(chess), EMBEDDER.model)
    assert found(vectors, "bake bread chess", 10) == [(bread, chess[0]), (volcano, VOLCANO)]
    with session_scope() as session:
        session.execute(delete(Document).where(Document.id == volcano))

    assert volcano not in {document for document, _ in found(vectors, "volcano lava")}
    assert len(vectors) == 1  # the deleted document's chunk was dropped when met


def test_the_graph_takes_over_past_the_threshold(tmp_path: Path) -> None:
    vectors = VectorIndex(tmp_path / "search.index", threshold=3)
    store(["Knead the dough, let the bread rise.", "Then bake it in a hot oven."])
    assert found(vectors, "bread") and not vectors.approximate

    tides = store(["The moon pulls the oceans.", "Two tides a day."])

    assert found(vectors, "moon oceans")[0][0] == tides
    assert vectors.approximate and len(vectors) == 4
