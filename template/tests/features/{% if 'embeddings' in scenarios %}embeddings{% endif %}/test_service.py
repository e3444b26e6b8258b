"""Text extraction, chunking, storage and the in-memory search index."""

import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import select, update

from app.core.database import session_scope
from app.core.migrate import upgrade_to_heads
from app.features.embeddings import service
from app.features.embeddings.embedders import HashingEmbedder
from app.features.embeddings.models import Chunk, Document, DocumentStatus, SourceFormat
from app.features.embeddings.upload import Upload

EMBEDDER = HashingEmbedder(64)
MIN_SCORE = 0.1  # EMBEDDINGS_MIN_SCORE's default
ANY_SCORE = -1.0  # every chunk compared, however weak the match
Process = Callable[[uuid.UUID], dict[str, object]]
WORDS = " ".join(f"w{i:03d}" for i in range(100))  # 100 words of 4 letters: 499 characters


def test_normalise_unifies_line_ends_spaces_and_blank_lines() -> None:
    text = "  Caf\u0065\u0301\r\n\r\n\r\n\rworld\t\t!  \x00\x07end \n"

    assert service.normalise(text) == "Caf\u00e9\n\nworld ! end"


def test_markdown_markup_is_removed_and_its_text_kept() -> None:
    markdown = (
        "# Title\n\n"
        "Some **bold**, __strong__, *emphasis*, _more_ and ~~struck~~ text.\n"
        "> quoted [a link](https://example.com) ![a picture](p.png) `code`\n\n"
        "```python\nprint(1)\n```\n\n"
        "| a | b |\n|---|:-:|\n| 1 | 2 |\n\n"
        "---\n"
        "[ref]: https://example.com\n"
        "<b>html</b>\n"
    )

    assert service.extract_text(markdown, SourceFormat.MARKDOWN) == (
        "Title\n\n"
        "Some bold, strong, emphasis, more and struck text.\n"
        "quoted a link a picture code\n\n"
        "print(1)\n\n"
        "a b\n\n1 2\n\n"
        "html"
    )


def test_markdown_cleanup_leaves_snake_case_and_arithmetic_alone() -> None:
    text = "call snake_case_name or foo__bar__baz with 2*3*4 or a * b"

    assert service.extract_text(text, SourceFormat.MARKDOWN) == text


def test_plain_text_keeps_what_looks_like_markup() -> None:
    assert service.extract_text("# not a heading, **really**", SourceFormat.TEXT) == (
        "# not a heading, **really**"
    )


def test_chunks_share_whole_words_and_respect_the_size() -> None:
    chunks = service.split_into_chunks(WORDS, size=50, overlap=10)

    # Ten words fit in 50 characters; the next chunk starts two words back (10 characters).
    assert chunks[0] == " ".join(f"w{i:03d}" for i in range(10))
    assert chunks[1] == " ".join(f"w{i:03d}" for i in range(8, 18))
    assert chunks[-1] == "w096 w097 w098 w099"
    assert len(chunks) == 13  # starts at words 0, 8, 16, ..., 96
    assert all(len(chunk) <= 50 for chunk in chunks)


def test_chunks_prefer_to_end_at_a_paragraph_then_a_sentence() -> None:
    paragraphs = "An opening paragraph that runs on.\n\nThe next one. It goes on and on and on."
    sentences = "One short sentence here. Another that runs on and on and on."

    assert service.split_into_chunks(paragraphs, size=60, overlap=0) == [
        "An opening paragraph that runs on.",
        "The next one. It goes on and on and on.",
    ]
    assert service.split_into_chunks(sentences, size=40, overlap=0) == [
        "One short sentence here.",
        "Another that runs on and on and on.",
    ]


def test_a_word_longer_than_a_chunk_is_cut_and_chunking_ends() -> None:
    chunks = service.split_into_chunks("a" * 120, size=50, overlap=10)

    assert [len(chunk) for chunk in chunks] == [50, 50, 40]


def test_an_overlap_close_to_the_size_still_makes_progress() -> None:
    chunks = service.split_into_chunks(WORDS, size=50, overlap=49)

    assert chunks[-1].endswith("w099")
    assert len(chunks) == 91  # one word further each time


def test_short_text_is_one_chunk() -> None:
    assert service.split_into_chunks("just this", size=50, overlap=10) == ["just this"]


@pytest.fixture
def tables() -> None:
    upgrade_to_heads()


def new_document(text: str, source_format: SourceFormat = SourceFormat.TEXT) -> uuid.UUID:
    return service.create_document(Upload("doc", source_format, text, len(text.encode())))


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
    assert service.search("bake bread", 1, EMBEDDER, MIN_SCORE)[0].document_id == bread

    volcano = new_document("Magma rises and the volcano erupts, pouring lava down its slopes.")
    process(volcano)
    assert service.search("volcano lava", 1, EMBEDDER, MIN_SCORE)[0].document_id == volcano

    set_content(bread, content="Chess openings: the Sicilian defence.")
    process(bread)
    best = service.search("chess openings", 1, EMBEDDER, MIN_SCORE)[0]
    assert (best.document_id, best.text) == (bread, "Chess openings: the Sicilian defence.")


def test_search_skips_documents_not_ready(process: Process) -> None:
    document_id = new_document("Photosynthesis turns sunlight into sugar in green leaves.")
    process(document_id)
    assert service.search("photosynthesis", 5, EMBEDDER, ANY_SCORE)

    # Being processed again: its old chunks are still stored until the new ones replace them.
    set_content(document_id, status=DocumentStatus.PROCESSING)

    assert service.search("photosynthesis", 5, EMBEDDER, ANY_SCORE) == []


def test_search_skips_documents_embedded_by_another_model(process: Process) -> None:
    process(new_document("Marathon training: long slow runs and rest days."))

    assert service.search("marathon", 5, HashingEmbedder(32), ANY_SCORE) == []
