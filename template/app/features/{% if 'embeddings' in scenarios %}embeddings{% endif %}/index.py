"""The search index: ready chunks' vectors held in memory, following the documents' change feed."""

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from io import BufferedIOBase
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Protocol, TypeVar

import numpy as np
from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from usearch.index import Index

from app.core.config import get_settings
from app.core.database import get_sessionmaker
from app.features.embeddings.config import get_embeddings_settings
from app.features.embeddings.embedders import (
    HASHING_MODEL,
    Embedder,
    HashingEmbedder,
    word_counts,
    word_weight,
)
from app.features.embeddings.metrics import SEARCH_SECONDS
from app.features.embeddings.models import Chunk, Document, DocumentFeed, DocumentStatus
from app.features.embeddings.schemas import SearchHit

logger = logging.getLogger(__name__)

VECTOR_DTYPE = np.dtype("<f4")  # how vectors are stored: float32, little-endian
FILE_FORMAT = 2  # bumped whenever the saved layout changes: older files are rebuilt
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


def is_searchable(document: Any, model: str, dimension: int) -> bool:
    """`searchable_documents` for a row already read (its status, model and dimension).

    For `search`, which reads its candidates' documents by primary key alone: with these
    conditions in the query, SQLite planned it from the status index instead.
    """
    return bool(
        document.status == DocumentStatus.READY
        and document.embedding_model == model
        and document.embedding_dimension == dimension
    )


# --- Vector stores: exact below the threshold, approximate from it on ----------------------


class Store(Protocol):
    """Vectors by chunk id (with the chunks' texts), and the nearest of them to a query."""

    def __len__(self) -> int: ...

    def add(self, keys: np.ndarray, vectors: np.ndarray, texts: Sequence[str]) -> None: ...

    def remove(self, keys: np.ndarray) -> None: ...

    def nearest(self, query: np.ndarray, count: int, text: str) -> np.ndarray:
        """Keys of (about) the `count` vectors of highest cosine with `query`, best first.

        `text` is the query the vector was made from.
        """
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

    def add(self, keys: np.ndarray, vectors: np.ndarray, texts: Sequence[str] = ()) -> None:
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

    def nearest(self, query: np.ndarray, count: int, text: str = "") -> np.ndarray:
        scores = self.vectors[: self.size] @ query
        best = np.arange(len(scores))
        if len(scores) > count:
            best = np.argpartition(-scores, count - 1)[:count]
        return self.keys[best[np.argsort(-scores[best], kind="stable")]]


class AnnStore:
    """A usearch HNSW graph: a search visits a few thousand vectors instead of all of them.

    For a model's vectors, where a query lies near the chunks it matches.
    """

    def __init__(self, graph: Index) -> None:
        self.graph = graph

    @classmethod
    def empty(cls, dimension: int, dtype: str, expansion_search: int) -> "AnnStore":
        graph = Index(ndim=dimension, metric="cos", dtype=dtype, expansion_search=expansion_search)
        return cls(graph)

    def __len__(self) -> int:
        return len(self.graph)

    def add(self, keys: np.ndarray, vectors: np.ndarray, texts: Sequence[str] = ()) -> None:
        if len(keys):
            self.graph.add(keys, vectors)

    def remove(self, keys: np.ndarray) -> None:
        if len(keys):
            self.graph.remove(keys)

    def nearest(self, query: np.ndarray, count: int, text: str = "") -> np.ndarray:
        keys: np.ndarray = self.graph.search(query, count).keys
        return keys


class Postings:
    """Which rows hold each word, and how much: word `words[i]`'s entries are at starts[i]:starts[i+1].

    `weights` are the products of a word's feature vector with the row's vector, as int8
    (times WEIGHT_SCALE): what that word of a query adds to the row's score.
    """

    def __init__(
        self, words: np.ndarray, starts: np.ndarray, rows: np.ndarray, weights: np.ndarray
    ) -> None:
        self.words, self.starts, self.rows, self.weights = words, starts, rows, weights

    @classmethod
    def of(cls, words: np.ndarray, rows: np.ndarray, weights: np.ndarray) -> "Postings":
        """Entries (word, row, weight) in any order, grouped by word."""
        # Stable: merged lists are two sorted runs, which timsort joins in linear time.
        order = np.argsort(words, kind="stable")
        ordered = words[order]
        starts = np.flatnonzero(np.diff(ordered)) + 1
        unique = ordered[np.concatenate([[0], starts])] if len(ordered) else ordered
        starts = np.concatenate([[0], starts, [len(ordered)]]).astype(np.int64)
        if not len(ordered):
            starts = np.zeros(1, np.int64)
        return cls(unique.astype(np.int32), starts, rows[order], weights[order])

    def __len__(self) -> int:
        return len(self.rows)

    def find(self, word: int) -> slice | None:
        at = int(np.searchsorted(self.words, word))
        if at == len(self.words) or self.words[at] != word:
            return None
        return slice(int(self.starts[at]), int(self.starts[at + 1]))

    def entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.repeat(self.words, np.diff(self.starts)), self.rows, self.weights

    def counts(self, vocabulary_size: int) -> np.ndarray:
        """Rows holding each word id."""
        return np.bincount(self.words, np.diff(self.starts), minlength=vocabulary_size)

    def keeping(self, keep: np.ndarray, renumber: np.ndarray | None = None) -> "Postings":
        """The entries for which `keep` (one flag per entry) is set, rows renumbered if asked."""
        words, rows, weights = self.entries()
        rows = rows[keep] if renumber is None else renumber[rows[keep]]
        return Postings.of(words[keep], rows, weights[keep])


class WordStore:
    """For the hashing embedder: candidates from the words a query shares with each chunk.

    A hashing vector is the normalised sum of its words' feature vectors, so a query's score
    with a chunk is the sum, over the query's words, of the word's weight times the product
    of its feature vector with the chunk's vector. That product is kept per (word, chunk)
    for the chunks holding the word (`postings`), and for every chunk in a dense column
    for the words most chunks hold (`dense`: their lists would be as long as the corpus).
    Summing them over a query's few words ranks every chunk at the cost of those lists; the
    best (see CANDIDATES) are scored again from int8 copies of their vectors, then by the
    caller from the stored float32 ones. A graph walk cannot do this: a query of a few words
    shares a little with thousands of chunks, so no chunk is a near neighbour
    (docs/benchmarks.md). Rows are appended; removed rows are flagged dead and dropped once
    they are half. Posting lists are merged as they grow (a few lists at any time); a
    word's dense column is made when all lists merge into one.
    """

    # Chunks scored from their int8 vectors: CANDIDATE_SHARE of them, at least CANDIDATES.
    # The scores of a query's top chunks grow closer as the corpus grows, so more are needed
    # for the same recall: 2,000 gave 0.97 of the exact top 10 at 100,000 chunks, 8,000 gave
    # 0.96 at 1,000,000 (docs/benchmarks.md).
    CANDIDATES = 2000
    CANDIDATE_SHARE = 1 / 125
    QUERY_SCALE = 8  # query word weights as whole numbers: 1 + log(count) in eighths
    DENSE_SHARE = 0.1  # a word held by this share of the chunks gets a dense column...
    DENSE_MIN_ROWS = 1000  # ...once it is held by at least this many
    WEIGHT_SCALE = 200.0  # products as int8: the coarsest step is 0.005 of a cosine
    ADD_BATCH = 2000  # rows whose word products are computed at once (bounds memory)

    def __init__(self, dimension: int) -> None:
        self.embedder = HashingEmbedder(dimension)
        self.size = 0  # rows used, live or dead
        self.live = 0
        self.keys = np.empty(0, np.int64)
        self.alive = np.empty(0, np.bool_)
        self.vectors = np.empty((0, dimension), np.int8)  # each row times 127 / its max
        self.scales = np.empty(0, np.float32)  # ...and that factor's inverse
        self.vocabulary: dict[str, int] = {}
        self.dense_words: dict[int, int] = {}  # word id -> its row in `dense`
        self.dense = np.empty((0, 0), np.int8)  # (dense words, rows): products, as weights
        self.dense_features = np.empty((0, dimension), np.float32)
        self.postings: list[Postings] = []
        # Live rows' keys sorted, and those rows (a key is live in one row at most, though a
        # replaced chunk's key, reused by SQLite, can also name dead rows).
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.live

    # --- Changes -----------------------------------------------------------------------

    def add(self, keys: np.ndarray, vectors: np.ndarray, texts: Sequence[str]) -> None:
        for start in range(0, len(keys), self.ADD_BATCH):
            end = start + self.ADD_BATCH
            self._add(keys[start:end], vectors[start:end], texts[start:end])

    def _add(self, keys: np.ndarray, vectors: np.ndarray, texts: Sequence[str]) -> None:
        count = len(keys)
        if not count:
            return
        first = self.size
        self._reserve(first + count)
        rows = slice(first, first + count)
        peaks = np.abs(vectors).max(axis=1)
        scales = np.where(peaks > 0, peaks / 127, 1).astype(np.float32)
        self.keys[rows], self.alive[rows], self.scales[rows] = keys, True, scales
        self.vectors[rows] = np.rint(vectors / scales[:, None])
        if len(self.dense_words):
            self.dense[:, rows] = quantise(self.dense_features @ vectors.T)
        self.size, self.live, self._sorted = first + count, self.live + count, None
        # Entries (word, row) for the words without a dense column.
        words, entry_rows = [], []
        vocabulary, dense = self.vocabulary, self.dense_words
        for row, text in enumerate(texts):
            ids = [vocabulary.setdefault(word, len(vocabulary)) for word in word_counts(text)]
            ids = [word for word in ids if word not in dense]
            words.extend(ids)
            entry_rows.extend([row] * len(ids))
        word_ids, local = np.array(words, np.int32), np.array(entry_rows, np.int64)
        products = self._products(word_ids, local, vectors)
        self.postings.append(Postings.of(word_ids, local.astype(np.int32) + first, products))
        self._merge()

    def _products(self, words: np.ndarray, rows: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Each entry's word feature vector times its row's vector, as int8 weights."""
        unique, inverse = np.unique(words, return_inverse=True)
        names = self.word_names()
        features = [self.embedder.word_features(names[word]) for word in unique.tolist()]
        lengths = np.array([len(buckets) for buckets, _ in features], np.int64)
        buckets = np.concatenate([b for b, _ in features] or [NO_KEYS])
        signed = np.concatenate([w for _, w in features] or [np.empty(0)])
        firsts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        per_entry = lengths[inverse]
        entry = np.repeat(np.arange(len(words)), per_entry)
        offset = np.arange(len(entry)) - np.repeat(np.cumsum(per_entry) - per_entry, per_entry)
        feature = firsts[inverse][entry] + offset
        products = vectors[rows[entry], buckets[feature]] * signed[feature]
        return quantise(np.bincount(entry, products, minlength=len(words)))

    def word_names(self) -> list[str]:
        """Words by number: numbers are given in order of insertion, which a dict keeps."""
        return list(self.vocabulary)

    def _reserve(self, needed: int) -> None:
        if needed <= len(self.keys):
            return
        capacity = max(needed, 2 * len(self.keys), 1024)  # doubling: appends stay cheap
        self.keys = grown(self.keys, capacity, axis=0)
        self.alive = grown(self.alive, capacity, axis=0)
        self.scales = grown(self.scales, capacity, axis=0)
        self.vectors = grown(self.vectors, capacity, axis=0)
        self.dense = grown(self.dense, capacity, axis=1)

    def _merge(self) -> None:
        """Keep few lists: merge the newest into the one before while within 4 times its size."""
        lists = self.postings
        while len(lists) > 1 and 4 * len(lists[-1]) >= len(lists[-2]):
            newer, older = lists.pop(), lists.pop()
            words, rows, weights = (
                np.concatenate(parts)
                for parts in zip(older.entries(), newer.entries(), strict=True)
            )
            lists.append(Postings.of(words, rows, weights))
            if len(lists) == 1:
                self._densify()

    def _densify(self) -> None:
        """Give a dense column to the words held by DENSE_SHARE of the rows (lists all merged)."""
        (lists,) = self.postings
        held = lists.counts(len(self.vocabulary))
        needed = max(self.DENSE_MIN_ROWS, self.DENSE_SHARE * self.live)
        promoted = [word for word in np.flatnonzero(held >= needed).tolist()]
        if not promoted:
            return
        names = self.word_names()
        features = np.zeros((len(promoted), self.vectors.shape[1]), np.float32)
        for row, word in enumerate(promoted):
            buckets, signed = self.embedder.word_features(names[word])
            np.add.at(features[row], buckets, signed)
        columns = np.zeros((len(promoted), self.dense.shape[1]), np.int8)
        for start in range(0, self.size, 65536):  # bounded memory: int8 rows to float32
            end = min(start + 65536, self.size)
            block = self.vectors[start:end].astype(np.float32) * self.scales[start:end, None]
            columns[:, start:end] = quantise(features @ block.T)
        for word in promoted:
            self.dense_words[word] = len(self.dense_words)
        self.dense = np.concatenate([self.dense, columns])
        self.dense_features = np.concatenate([self.dense_features, features])
        words, _, _ = lists.entries()
        self.postings = [lists.keeping(~np.isin(words, promoted))]

    def remove(self, keys: np.ndarray) -> None:
        if not len(keys) or not self.size:
            return
        if self._sorted is None:
            live = np.flatnonzero(self.alive[: self.size])
            order = live[np.argsort(self.keys[live])]
            self._sorted = self.keys[order], order
        sorted_keys, order = self._sorted
        if not len(order):
            return
        at = np.minimum(np.searchsorted(sorted_keys, keys), len(order) - 1)
        rows = order[at[sorted_keys[at] == keys]]
        rows = rows[self.alive[rows]]  # removed already, since the keys were sorted
        self.alive[rows] = False
        self.live -= len(rows)
        if self.size >= 1024 and 2 * self.live < self.size:
            self._compact()

    def _compact(self) -> None:
        """Drop the dead rows, renumbering the others."""
        keep = self.alive[: self.size]
        renumber = np.cumsum(keep) - 1
        self.keys = self.keys[: self.size][keep]
        self.alive = np.ones(self.live, np.bool_)
        self.scales = self.scales[: self.size][keep]
        self.vectors = self.vectors[: self.size][keep]
        self.dense = self.dense[:, : self.size][:, keep]
        self.postings = [
            lists.keeping(keep[lists.rows], renumber.astype(np.int32)) for lists in self.postings
        ]
        self.size, self._sorted = self.live, None

    # --- Search ------------------------------------------------------------------------

    def nearest(self, query: np.ndarray, count: int, text: str) -> np.ndarray:
        # Whole-number query weights: int16 sums cost a sixth of float32 ones at a million
        # rows (they halve the memory read, and numpy's integer loops vectorise better).
        weights = {
            number: max(1, round(self.QUERY_SCALE * word_weight(times)))
            for word, times in word_counts(text).items()
            # A word in no chunk: its n-grams alone cannot pick candidates.
            if (number := self.vocabulary.get(word)) is not None
        }
        # int32 when a long query's sum could overflow int16.
        dtype = np.int16 if 127 * sum(weights.values()) < 2**15 else np.int32
        scores: np.ndarray = np.zeros(self.size, dtype)
        # Words of equal weight (most queries: all of them) are added up as they are stored,
        # then multiplied once: in place, that halves the time of weighting each one.
        for weight in set(weights.values()):
            words = [number for number, w in weights.items() if w == weight]
            sums = scores if len(weights) == len(words) else np.zeros(self.size, dtype)
            for number in words:
                column = self.dense_words.get(number)
                if column is not None:
                    np.add(sums, self.dense[column, : self.size], out=sums, dtype=dtype)
                    continue
                for lists in self.postings:
                    found = lists.find(number)
                    if found is not None:
                        # A row is in a word's list once: this fancy-indexed add is exact.
                        sums[lists.rows[found]] += lists.weights[found]
            np.multiply(sums, weight, out=sums, dtype=dtype)
            if sums is not scores:
                scores += sums
        live = self.alive[: self.size]
        candidates = max(self.CANDIDATES, round(self.CANDIDATE_SHARE * self.live))
        if weights and self.live > candidates:
            if self.live < self.size:
                scores[~live] = np.iinfo(dtype).min
            rows = top_rows(scores, candidates)
        else:
            # Few rows, or no query word in any chunk (only n-grams could match): all of them.
            rows = np.flatnonzero(live)
        keys: np.ndarray = self.keys[self._best(rows, query, count)]
        return keys

    def _best(self, rows: np.ndarray, query: np.ndarray, count: int) -> np.ndarray:
        """The `count` of `rows` of highest cosine with `query`, from their int8 vectors."""
        # einsum, not @: numpy's BLAS splits a product this small across threads, which
        # made it five times slower on a busy 2-core machine.
        scores = np.concatenate(
            [
                np.einsum("ij,j->i", self.vectors[part], query, dtype=np.float32)
                * self.scales[part]
                for part in np.array_split(rows, max(1, len(rows) // 65536))
            ]
            or [np.empty(0, np.float32)]
        )
        best = np.arange(len(rows))
        if len(rows) > count:
            best = np.argpartition(-scores, count - 1)[:count]
        return rows[best[np.argsort(-scores[best], kind="stable")]]

    # --- Saving --------------------------------------------------------------------------

    # Arrays with one entry per row, and the axis of their rows: saved with room to grow.
    ROW_AXES: ClassVar[dict[str, int]] = {"keys": 0, "scales": 0, "vectors": 0, "dense": 1}

    def write(self, out: BinaryIO) -> list[str]:
        """Write the store to `out`, one .npy array after another; returns their names.

        Row arrays get a quarter more rows, zeros, so that the first chunks added after a
        restart fill them in place instead of copying every array.
        """
        arrays = self.arrays()
        room = max(1024, self.size // 4)
        for name, array in arrays.items():
            write_array(out, array, self.ROW_AXES.get(name), room)
        return list(arrays)

    @classmethod
    def read(cls, dimension: int, file: BufferedIOBase, names: Sequence[str]) -> "WordStore":
        """The store `write` wrote as `names`, its arrays mapped from the file, not read.

        Not a .npz, whose members are CRC-checked as they are read: 7.8 s for a million
        rows here. Reading the same arrays into memory took 0.8-1.6 s in a new process;
        mapping them takes no time, and a search reads only the pages it needs. The map is
        copy-on-write: rows added later stay in this process.
        """
        arrays = {name: map_array(file) for name in names}
        return cls.from_arrays(dimension, arrays, int(arrays["used"][0]))

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild the store (`from_arrays`), dead rows dropped."""
        if self.live < self.size:
            self._compact()
        arrays: dict[str, np.ndarray] = {
            "used": np.array([self.size], np.int64),
            "keys": self.keys[: self.size],
            "scales": self.scales[: self.size],
            "vectors": self.vectors[: self.size],
            "dense": self.dense[:, : self.size],
            "dense_words": np.array(list(self.dense_words), np.int32),
            "dense_features": self.dense_features,
            # One string: a word is \w+, so never holds a newline.
            "vocabulary": np.frombuffer("\n".join(self.word_names()).encode(), np.uint8),
        }
        for number, lists in enumerate(self.postings):
            arrays[f"postings{number}_words"] = lists.words
            arrays[f"postings{number}_starts"] = lists.starts
            arrays[f"postings{number}_rows"] = lists.rows
            arrays[f"postings{number}_weights"] = lists.weights
        return arrays

    @classmethod
    def from_arrays(
        cls, dimension: int, arrays: Mapping[str, np.ndarray], used: int | None = None
    ) -> "WordStore":
        """The store `arrays` describes; row arrays may be longer than the `used` rows."""
        store = cls(dimension)
        store.keys, store.scales = arrays["keys"], arrays["scales"]
        store.vectors, store.dense = arrays["vectors"], arrays["dense"]
        capacity = len(store.keys)
        if (
            store.vectors.shape != (capacity, dimension)
            or store.scales.shape != (capacity,)
            or store.dense.shape[1] != capacity
        ):
            raise ValueError(f"{store.vectors.shape} vectors for {capacity} keys")
        store.size = store.live = capacity if used is None else used
        store.alive = np.zeros(capacity, np.bool_)
        store.alive[: store.size] = True
        text = arrays["vocabulary"].tobytes().decode()
        store.vocabulary = {word: n for n, word in enumerate(text.split("\n"))} if text else {}
        store.dense_words = {int(w): n for n, w in enumerate(arrays["dense_words"].tolist())}
        store.dense_features = arrays["dense_features"]
        number = 0
        while f"postings{number}_words" in arrays:
            words, starts = arrays[f"postings{number}_words"], arrays[f"postings{number}_starts"]
            rows, weights = arrays[f"postings{number}_rows"], arrays[f"postings{number}_weights"]
            store.postings.append(Postings(words, starts, rows, weights))
            number += 1
        return store


def top_rows(scores: np.ndarray, count: int) -> np.ndarray:
    """Indexes of `count` highest of `scores`, in no order.

    A threshold from a sample, then one comparison: at a million rows, a third of the time
    of np.argpartition (which is slower still on integers).
    """
    if len(scores) <= count:
        return np.arange(len(scores))
    step = max(1, len(scores) // (32 * count))
    sample = scores[::step]
    # The sample's rank for 1.5 times `count` rows above the threshold: room for its error.
    above_in_sample = min(len(sample), -(-len(sample) * 3 * count // (2 * len(scores))))
    threshold = np.partition(sample, len(sample) - above_in_sample)[len(sample) - above_in_sample]
    rows = np.flatnonzero(scores >= threshold)
    if len(rows) < count:  # the sample missed: select from every row
        rows = np.arange(len(scores))
    best: np.ndarray = rows[np.argpartition(scores[rows], len(rows) - count)[len(rows) - count :]]
    return best


def quantise(products: np.ndarray) -> np.ndarray:
    """Word products as int8 weights (WordStore.WEIGHT_SCALE)."""
    scaled = np.rint(products * WordStore.WEIGHT_SCALE)
    return np.clip(scaled, -127, 127).astype(np.int8)


ZEROS = bytes(2**20)


def write_array(out: BinaryIO, array: np.ndarray, rows_axis: int | None, room: int) -> None:
    """`array` in .npy format, with `room` more zeroed rows along `rows_axis` if given."""
    shape = list(array.shape)
    if rows_axis is not None:
        shape[rows_axis] += room
    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False}
    np.lib.format.write_array_header_2_0(out, {**header, "shape": tuple(shape)})
    array = np.ascontiguousarray(array)
    # Axis 0: the rows, then the zeros; axis 1: each row followed by its zeros.
    blocks = [array] if rows_axis in (None, 0) else list(array)
    zeros = (
        0
        if rows_axis is None
        else room * array.itemsize * (int(np.prod(array.shape[1:])) if rows_axis == 0 else 1)
    )
    for block in blocks:
        if block.nbytes:
            out.write(block.data.cast("B"))
        for start in range(0, zeros, len(ZEROS)):
            out.write(ZEROS[: min(len(ZEROS), zeros - start)])


def map_array(file: BufferedIOBase) -> np.ndarray:
    """The next .npy array in `file`, mapped copy-on-write; the file moves past it."""
    major, _ = np.lib.format.read_magic(file)
    if major == 1:
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(file)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(file)
    if fortran or dtype.hasobject:
        raise ValueError(f"unexpected array layout ({dtype}, Fortran order {fortran})")
    offset = file.tell()
    size = int(np.prod(shape)) * dtype.itemsize
    if offset + size > os.fstat(file.fileno()).st_size:
        raise ValueError("the file ends inside an array")
    # mmap cannot map nothing; np.memmap leaves the file at its end, hence the seek after.
    array = np.memmap(file, dtype, "c", offset, shape) if size else np.zeros(shape, dtype)
    file.seek(offset + size)
    return array


def grown(array: np.ndarray, capacity: int, axis: int) -> np.ndarray:
    """`array` with room for `capacity` along `axis`, the old values kept."""
    shape = list(array.shape)
    shape[axis] = capacity
    bigger = np.zeros(shape, array.dtype)
    bigger[tuple(slice(0, n) for n in array.shape)] = array
    return bigger


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
    """Ready chunks' vectors: exact below `ann_threshold` chunks, approximate from it on.

    Approximate means a WordStore for the hashing embedder's vectors, an HNSW graph for a
    model's (see their docstrings for why each suits its vectors).

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
    def threshold(self) -> int:
        """Chunks from which the approximate store takes over."""
        if self._threshold is not None:
            return self._threshold
        return get_embeddings_settings().ann_threshold

    def __len__(self) -> int:
        return len(self._state.store) if self._state is not None else 0

    @property
    def approximate(self) -> bool:
        """Whether searches are approximate (else they compare every vector)."""
        return self._state is not None and not isinstance(self._state.store, ExactStore)

    @property
    def kind(self) -> str:
        """`exact`, `words` (WordStore) or `hnsw` (AnnStore); `none` before the first search."""
        return "none" if self._state is None else store_kind(self._state.store)

    def nearest(
        self, session: Session, query: np.ndarray, model: str, count: int, text: str = ""
    ) -> tuple[list[int], object]:
        """Chunk ids of (about) the `count` nearest chunks to `query`, best first, as of now.

        `text` is the query `query` embeds. Also returns a token naming the index's state,
        for `forget`.
        """
        with self._lock:
            state = self._catch_up(session, model, len(query))
            keys = state.store.nearest(query, count, text) if len(state.store) else NO_KEYS
            return keys.tolist(), (state, state.position)

    def forget(self, keys: Sequence[int], token: object) -> None:
        """Drop chunk ids a search found gone (a document deleted outright: no feed says so).

        Only while the index is as it was when it named them (`token`): after a catch-up,
        an id SQLite reused for a new chunk must not be dropped for its old owner's sake.
        """
        with self._lock:
            state = self._state
            # `is`, not ==: a dataclass compares field by field, and a State holds arrays.
            if (
                keys
                and state is not None
                and isinstance(token, tuple)
                and token[0] is state
                and token[1] == state.position
            ):
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
            self._grow(session, state)
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
                select(
                    Chunk.document_id, Document.generation, Chunk.id, Chunk.embedding, Chunk.text
                )
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
            state.store.add(keys, vectors.reshape(-1, dimension), [row[4] for row in rows])
            self.stats.chunks_read += len(keys)

    def _grow(self, session: Session, state: State) -> None:
        """Past the threshold, the exact store's vectors move into an approximate one (once)."""
        store = state.store
        if not isinstance(store, ExactStore) or len(store) < self.threshold:
            return
        approximate = self._new_store(state.space)
        keys, vectors = store.keys[: len(store)], store.vectors[: len(store)]
        for start in range(0, len(keys), self.LOAD_BATCH):
            part = keys[start : start + self.LOAD_BATCH]
            # The exact store keeps no text; the word store needs it (a graph ignores it).
            texts = {
                key: text
                for key, text in session.execute(
                    select(Chunk.id, Chunk.text).where(Chunk.id.in_(part.tolist()))
                )
            }
            # A chunk deleted meanwhile (no feed says so) gets no text: leave it out.
            present = np.array([key in texts for key in part.tolist()], np.bool_)
            approximate.add(
                part[present],
                vectors[start : start + self.LOAD_BATCH][present],
                [texts[key] for key in part[present].tolist()],
            )
        state.store = approximate

    def _new_store(self, space: Space) -> "WordStore | AnnStore":
        """The approximate store for vectors of this model: words for hashing, else a graph."""
        _, _, model, dimension = space
        if model == HASHING_MODEL:
            return WordStore(dimension)
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
        store: Store = self._new_store(space) if self.threshold == 0 else ExactStore(dimension)
        state = State(space, store, position)
        searchable = searchable_documents(model, dimension)
        # Documents changed after `position` are read again by the next catch-up.
        documents = session.scalars(select(Document.id).where(searchable)).all()
        for group in batched(documents, self.LOAD_BATCH):
            self._add_documents(session, state, group, searchable)
            self._grow(session, state)
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
            "kind": store_kind(state.store),
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
            elif isinstance(store, WordStore):
                with data.open("wb") as out:
                    header["arrays"] = store.write(out)
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
            try:
                path.with_name(old["data"]).unlink(missing_ok=True)
            except OSError as exc:  # mapped by a process, on a system that forbids that
                logger.warning("cannot remove the old search index file: %s", exc)

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
            elif header["kind"] == "words":
                with data.open("rb") as file:
                    store = WordStore.read(dimension, file, header["arrays"])
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


def store_kind(store: Store) -> str:
    if isinstance(store, ExactStore):
        return "exact"
    return "words" if isinstance(store, WordStore) else "hnsw"


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
        # More candidates than asked for: approximate stores rank by vectors they hold at
        # lower precision, and some may belong to a document deleted meanwhile.
        candidates, token = vectors.nearest(
            session, vector, embedder.model, candidates_for(limit), query
        )
        # Two primary-key lookups, not a join: SQLite would plan that join from the status
        # index, reading every ready document's chunks (68 ms at 100,000 chunks).
        chunks = session.execute(
            select(
                Chunk.id, Chunk.document_id, Chunk.chunk_index, Chunk.text, Chunk.embedding
            ).where(Chunk.id.in_(candidates))
        ).all()
        # By primary key alone, checked by `is_searchable` (25 ms of 31 at 1,000,000 chunks
        # in 10,000 documents when the query held the conditions).
        documents = session.execute(
            select(
                Document.id,
                Document.status,
                Document.embedding_model,
                Document.embedding_dimension,
            ).where(Document.id.in_({row.document_id for row in chunks}))
        ).all()
    searchable = {
        document.id
        for document in documents
        if is_searchable(document, embedder.model, len(vector))
    }
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
