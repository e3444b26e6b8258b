"""Prometheus metrics of the embeddings feature."""

from prometheus_client import Counter, Histogram

UPLOADS_REJECTED = Counter(
    "embeddings_uploads_rejected",
    "Document uploads refused before anything was stored",
    ["reason"],
)
CHUNKS_EMBEDDED = Counter(
    "embeddings_chunks_embedded",
    "Chunks embedded and stored",
    ["model"],
)
EMBED_BATCH_SECONDS = Histogram(
    "embeddings_batch_seconds",
    "Time to embed one batch of chunks",
    ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SEARCH_SECONDS = Histogram(
    "embeddings_search_seconds",
    "Time to answer one search, embedding the query included",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
