"""Benchmark (not a test): embedding throughput and search latency over stored chunks.

    uv run python -m app.features.embeddings.bench [--chunks 10000] [--queries 300]

It uses the embedder and chunk size chosen by the EMBEDDINGS_* settings (the offline
hashing embedder by default) and a throwaway SQLite database unless --database-url is given.
"""

import argparse
import itertools
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from app.core.config import get_settings
from app.core.database import reset_database_state
from app.core.migrate import upgrade_to_heads
from app.features.embeddings import service
from app.features.embeddings.config import get_embeddings_settings
from app.features.embeddings.embedders import get_embedder
from app.features.embeddings.models import SourceFormat
from app.features.embeddings.upload import Upload

CHUNKS_PER_DOCUMENT = 100


def vocabulary(rng: random.Random, size: int = 20_000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choices(letters, k=rng.randint(3, 10))) for _ in range(size)]


def synthetic_chunks(
    count: int, chunk_size: int, words: list[str], rng: random.Random
) -> list[str]:
    """Chunks of made-up words, frequent and rare ones as in real text (Zipf's law)."""
    cumulative = list(itertools.accumulate(1 / rank for rank in range(1, len(words) + 1)))
    chunks = []
    for _ in range(count):
        picked = rng.choices(words, cum_weights=cumulative, k=chunk_size // 5)
        chunks.append(" ".join(picked)[:chunk_size].rsplit(" ", 1)[0])
    return chunks


def percentile(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100)[p - 1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--limit", type=int, default=10, help="results per search")
    parser.add_argument("--database-url", help="default: a throwaway SQLite file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="embeddings-bench-") as scratch:
        os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        get_settings.cache_clear()
        reset_database_state()
        upgrade_to_heads()
        settings = get_embeddings_settings()
        embedder = get_embedder()
        rng = random.Random(42)
        words = vocabulary(rng)
        chunks = synthetic_chunks(args.chunks, settings.chunk_size, words, rng)
        print(f"embedder {embedder.model!r}, {args.chunks} chunks of ~{settings.chunk_size} chars")

        started = time.perf_counter()
        vectors = service.embed_in_batches(embedder, chunks, settings.batch_size)
        embed_seconds = time.perf_counter() - started
        print(
            f"embedding: {args.chunks / embed_seconds:,.0f} chunks/s "
            f"({embed_seconds:.2f} s, batches of {settings.batch_size}, dimension {vectors.shape[1]})"
        )

        started = time.perf_counter()
        for first in range(0, len(chunks), CHUNKS_PER_DOCUMENT):
            part = chunks[first : first + CHUNKS_PER_DOCUMENT]
            text = "\n\n".join(part)
            document_id = service.create_document(
                Upload(f"bench {first}", SourceFormat.TEXT, text, len(text.encode()))
            )
            part_vectors = vectors[first : first + CHUNKS_PER_DOCUMENT]
            service.store_chunks(document_id, part, part_vectors, embedder.model)
        store_seconds = time.perf_counter() - started
        print(f"storing:   {args.chunks / store_seconds:,.0f} chunks/s ({store_seconds:.2f} s)")

        queries = [" ".join(rng.sample(words[:2000], 3)) for _ in range(args.queries)]
        started = time.perf_counter()
        service.search(queries[0], args.limit, embedder, settings.min_score)
        cold = time.perf_counter() - started
        latencies = []
        for query in queries:
            started = time.perf_counter()
            service.search(query, args.limit, embedder, settings.min_score)
            latencies.append((time.perf_counter() - started) * 1000)
        print(
            f"search over {args.chunks} chunks (top {args.limit}, query embedding included): "
            f"p50 {percentile(latencies, 50):.2f} ms, p99 {percentile(latencies, 99):.2f} ms, "
            f"first search (loads the index) {cold * 1000:.0f} ms"
        )
        reset_database_state()


if __name__ == "__main__":
    main()
