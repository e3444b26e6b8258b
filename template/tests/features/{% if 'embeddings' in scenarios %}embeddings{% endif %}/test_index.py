"""The search index: approximate above the threshold, following the feed, saved and reloaded."""

import random
import uuid
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from app.core.database import session_scope
from app.core.migrate import upgrade_to_heads
from app.features.embeddings import service
from app.features.embeddings.embedders import HashingEmbedder
from app.features.embeddings.index import VectorIndex, WordStore, search
from app.features.embeddings.models import Document, DocumentFeed, SourceFormat
from app.features.embeddings.tasks import process_document
from app.features.embeddings.upload import Upload
from bench.embeddings import synthetic_chunks, vocabulary


# Above the threshold the hashing embedder's vectors go to a word index, a model's to an HNSW
# graph: MODEL stands for a model (hashing vectors under another name) to test the graph.
class ModelEmbedder(HashingEmbedder):
    """Hashing vectors under a model's name: the index searches them through the graph."""

    @property
    def model(self) -> str:
        return "some-model"


EMBEDDER = HashingEmbedder(64)
MODEL = ModelEmbedder(64)
ANY_SCORE = -1.0  # every chunk compared, however weak the match
EXACT = 10**9  # a threshold no test corpus reaches: the index compares every vector
BREAD = "Knead the dough, let the bread rise, then bake it in a hot oven."
ZERO_ENDED = uuid.UUID("12345678-1234-4234-8234-123456789a00")
VOLCANO = "Magma rises and the volcano erupts, pouring lava down its slopes."


@pytest.fixture(autouse=True)
def tables() -> None:
    upgrade_to_heads()


@pytest.fixture(params=["words", "graph", "exact"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which store the index uses, whatever the test's corpus size."""
    return str(request.param)


def threshold_of(kind: str) -> int:
    return EXACT if kind == "exact" else 0


def embedder_of(kind: str) -> HashingEmbedder:
    return MODEL if kind == "graph" else EMBEDDER


def store(chunks: list[str], embedder: HashingEmbedder = EMBEDDER) -> uuid.UUID:
    """A ready document made of exactly these chunks, as processing stores them."""
    text = "\n\n".join(chunks)
    upload = Upload("doc", SourceFormat.TEXT, text, len(text.encode()))
    document_id, _ = service.create_document(upload, process_document)
    service.start_processing(document_id)
    service.store_chunks(document_id, chunks, embedder.embed(chunks), embedder.model)
    return document_id


def found(
    vectors: VectorIndex, query: str, limit: int = 5, embedder: HashingEmbedder = EMBEDDER
) -> list[tuple[uuid.UUID, str]]:
    return [
        (hit.document_id, hit.text) for hit in search(query, limit, embedder, ANY_SCORE, vectors)
    ]


@pytest.mark.parametrize("approximate", ["words", "graph"])
def test_approximate_search_finds_what_comparing_every_vector_finds(
    tmp_path: Path, approximate: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Candidates for a tenth of the corpus, as for a large one (2,000 of 20,000 and more).
    monkeypatch.setattr(WordStore, "CANDIDATES", 300)
    # The default dimension: in 64, hash collisions weigh as much as shared words.
    embedder = ModelEmbedder(512) if approximate == "graph" else HashingEmbedder(512)
    rng = random.Random(7)
    words = vocabulary(rng, 3000)
    chunks = synthetic_chunks(3000, 300, words, rng)
    for first in range(0, len(chunks), 100):
        store(chunks[first : first + 100], embedder)
    index = VectorIndex(tmp_path / "approximate", threshold=0)
    exact = VectorIndex(tmp_path / "exact", threshold=EXACT)
    # A user quoting a passage: a few consecutive words of a stored chunk.
    queries = []
    for chunk in rng.sample(chunks, 50):
        chunk_words = chunk.split()
        start = rng.randrange(len(chunk_words) - 8)
        queries.append(" ".join(chunk_words[start : start + 8]))

    shared = sum(
        len(set(found(index, q, 10, embedder)) & set(found(exact, q, 10, embedder)))
        for q in queries
    )

    assert index.kind == ("words" if approximate == "words" else "hnsw")
    assert exact.kind == "exact"
    assert len(index) == len(exact) == 3000
    assert shared / (10 * len(queries)) >= 0.95


def test_two_indexes_see_each_others_new_chunks(tmp_path: Path, kind: str) -> None:
    """Two processes' indexes over one database: each finds what the other's process stored."""
    threshold, embedder = threshold_of(kind), embedder_of(kind)
    api = VectorIndex(tmp_path / "api.index", threshold=threshold)
    other = VectorIndex(tmp_path / "other.index", threshold=threshold)
    bread = store([BREAD], embedder)
    assert found(api, "bake bread", 5, embedder)[0][0] == bread
    assert found(other, "bake bread", 5, embedder)[0][0] == bread

    volcano = store([VOLCANO], embedder)

    assert found(api, "volcano lava", 5, embedder)[0][0] == volcano
    assert found(other, "volcano lava", 5, embedder)[0][0] == volcano
    assert api.stats.builds == other.stats.builds == 1  # caught up, not rebuilt


def test_a_restart_answers_from_the_saved_index(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    threshold, embedder = threshold_of(kind), embedder_of(kind)
    path = tmp_path / "search.index"
    # An id ending in a zero byte, which the saved file must keep (numpy's "S16" drops it).
    monkeypatch.setattr(uuid, "uuid4", lambda: ZERO_ENDED)
    bread = store([BREAD], embedder)
    monkeypatch.undo()
    before = VectorIndex(path, threshold=threshold)
    assert found(before, "bake bread", 5, embedder)[0][0] == bread  # built and saved
    tides = store(["The moon pulls the oceans into two tides a day."], embedder)

    restarted = VectorIndex(path, threshold=threshold)

    assert found(restarted, "moon tides", 5, embedder)[0][0] == tides
    assert found(restarted, "bake bread", 5, embedder)[0][0] == bread
    assert (restarted.stats.loads, restarted.stats.builds) == (1, 0)
    assert restarted.stats.chunks_read == 1  # only the chunk stored since the save
    assert len(restarted) == 2
    assert restarted.kind == before.kind


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


def test_a_truncated_word_index_is_rebuilt_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "search.index"
    bread = store([BREAD])
    found(VectorIndex(path, threshold=0), "bread")
    (data,) = tmp_path.glob("search.index.*")  # the arrays, which the header names
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])

    restarted = VectorIndex(path, threshold=0)

    assert found(restarted, "bake bread")[0][0] == bread
    assert (restarted.stats.loads, restarted.stats.builds) == (0, 1)


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


def test_a_replaced_or_deleted_document_leaves_the_results(tmp_path: Path, kind: str) -> None:
    threshold, embedder = threshold_of(kind), embedder_of(kind)
    vectors = VectorIndex(tmp_path / "search.index", threshold=threshold)
    bread = store([BREAD], embedder)
    volcano = store([VOLCANO], embedder)
    assert found(vectors, "bread", 5, embedder)[0][0] == bread

    service.start_processing(bread)  # being processed again: out of search meanwhile
    assert bread not in {document for document, _ in found(vectors, "bake bread", 5, embedder)}
    chess = ["Chess openings: the Sicilian defence."]
    service.store_chunks(bread, chess, embedder.embed(chess), embedder.model)
    assert found(vectors, "bake bread chess", 10, embedder) == [
        (bread, chess[0]),
        (volcano, VOLCANO),
    ]
    with session_scope() as session:
        session.execute(delete(Document).where(Document.id == volcano))

    assert volcano not in {document for document, _ in found(vectors, "volcano lava", 5, embedder)}
    assert len(vectors) == 1  # the deleted document's chunk was dropped when met


@pytest.mark.parametrize("approximate", ["words", "graph"])
def test_the_approximate_store_takes_over_past_the_threshold(
    tmp_path: Path, approximate: str
) -> None:
    embedder = embedder_of(approximate)
    vectors = VectorIndex(tmp_path / "search.index", threshold=3)
    store(["Knead the dough, let the bread rise.", "Then bake it in a hot oven."], embedder)
    assert found(vectors, "bread", 5, embedder) and vectors.kind == "exact"

    tides = store(["The moon pulls the oceans.", "Two tides a day."], embedder)

    assert found(vectors, "moon oceans", 5, embedder)[0][0] == tides
    assert vectors.kind == ("words" if approximate == "words" else "hnsw")
    assert len(vectors) == 4


def test_a_query_sharing_no_whole_word_finds_what_comparing_every_vector_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The word index picks candidates by whole words; a query with none compares every chunk."""
    monkeypatch.setattr(WordStore, "CANDIDATES", 1)
    words = VectorIndex(tmp_path / "words.index", threshold=0)
    exact = VectorIndex(tmp_path / "exact.index", threshold=EXACT)
    store([BREAD, "The moon pulls the oceans into two tides a day.", "Chess openings."])
    store([VOLCANO, "Lava flows slowly downhill."])

    # "volcanoes" and "erupting" are in no chunk: only their letters match "volcano", "erupts".
    assert found(words, "erupting volcanoes") == found(exact, "erupting volcanoes")


def test_replacing_documents_again_and_again_keeps_the_index_right(tmp_path: Path) -> None:
    """Replaced chunks leave the word index; once they are half of it, it is compacted."""
    rng = random.Random(3)
    words = vocabulary(rng, 500)
    other = store(synthetic_chunks(600, 200, words, rng))
    vectors = VectorIndex(tmp_path / "search.index", threshold=0)
    replaced = store([BREAD])
    assert found(vectors, "bake bread")[0][0] == replaced

    for round_ in range(4):
        service.start_processing(replaced)
        chunks = [*synthetic_chunks(600, 200, words, rng), f"{VOLCANO} Round {round_}."]
        service.store_chunks(replaced, chunks, EMBEDDER.embed(chunks), EMBEDDER.model)
        assert found(vectors, f"volcano lava round {round_}")[0] == (replaced, chunks[-1])

    assert len(vectors) == 1201
    assert BREAD not in {text for _, text in found(vectors, "bake bread", 10)}
    vectors.save()
    restarted = VectorIndex(tmp_path / "search.index", threshold=0)
    assert found(restarted, "volcano lava round 3")[0] == (replaced, chunks[-1])
    assert len(restarted) == 1201 and restarted.stats.loads == 1
    assert other in {document for document, _ in found(restarted, words[0], 10)}
