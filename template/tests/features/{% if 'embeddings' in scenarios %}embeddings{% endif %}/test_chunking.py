"""Text extraction and chunking: markup removed, prose normalised, overlapping chunks."""

from app.features.embeddings import chunking
from app.features.embeddings.models import SourceFormat

WORDS = " ".join(f"w{i:03d}" for i in range(100))  # 100 words of 4 letters: 499 characters


def test_normalise_unifies_line_ends_spaces_and_blank_lines() -> None:
    text = "  Caf\u0065\u0301\r\n\r\n\r\n\rworld\t\t!  \x00\x07end \n"

    assert chunking.normalise(text) == "Caf\u00e9\n\nworld ! end"


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

    assert chunking.extract_text(markdown, SourceFormat.MARKDOWN) == (
        "Title\n\n"
        "Some bold, strong, emphasis, more and struck text.\n"
        "quoted a link a picture code\n\n"
        "print(1)\n\n"
        "a b\n\n1 2\n\n"
        "html"
    )


def test_markdown_cleanup_leaves_snake_case_and_arithmetic_alone() -> None:
    text = "call snake_case_name or foo__bar__baz with 2*3*4 or a * b"

    assert chunking.extract_text(text, SourceFormat.MARKDOWN) == text


def test_plain_text_keeps_what_looks_like_markup() -> None:
    assert chunking.extract_text("# not a heading, **really**", SourceFormat.TEXT) == (
        "# not a heading, **really**"
    )


def test_chunks_share_whole_words_and_respect_the_size() -> None:
    chunks = chunking.split_into_chunks(WORDS, size=50, overlap=10)

    # Ten words fit in 50 characters; the next chunk starts two words back (10 characters).
    assert chunks[0] == " ".join(f"w{i:03d}" for i in range(10))
    assert chunks[1] == " ".join(f"w{i:03d}" for i in range(8, 18))
    assert chunks[-1] == "w096 w097 w098 w099"
    assert len(chunks) == 13  # starts at words 0, 8, 16, ..., 96
    assert all(len(chunk) <= 50 for chunk in chunks)


def test_chunks_prefer_to_end_at_a_paragraph_then_a_sentence() -> None:
    paragraphs = "An opening paragraph that runs on.\n\nThe next one. It goes on and on and on."
    sentences = "One short sentence here. Another that runs on and on and on."

    assert chunking.split_into_chunks(paragraphs, size=60, overlap=0) == [
        "An opening paragraph that runs on.",
        "The next one. It goes on and on and on.",
    ]
    assert chunking.split_into_chunks(sentences, size=40, overlap=0) == [
        "One short sentence here.",
        "Another that runs on and on and on.",
    ]


def test_a_word_longer_than_a_chunk_is_cut_and_chunking_ends() -> None:
    chunks = chunking.split_into_chunks("a" * 120, size=50, overlap=10)

    assert [len(chunk) for chunk in chunks] == [50, 50, 40]


def test_an_overlap_close_to_the_size_still_makes_progress() -> None:
    chunks = chunking.split_into_chunks(WORDS, size=50, overlap=49)

    assert chunks[-1].endswith("w099")
    assert len(chunks) == 91  # one word further each time


def test_short_text_is_one_chunk() -> None:
    assert chunking.split_into_chunks("just this", size=50, overlap=10) == ["just this"]
