"""Chunking: a document's prose extracted, normalised and cut into overlapping chunks."""

import re
import unicodedata

from app.features.embeddings.models import SourceFormat

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
