"""Settings of the embeddings feature, read from `EMBEDDINGS_*` environment variables."""

from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.config import settings_getter


class EmbeddingsSettings(BaseSettings):
    """Upload limits, chunking, and which embedder turns text into vectors."""

    model_config = SettingsConfigDict(env_prefix="EMBEDDINGS_", env_file=".env", extra="ignore")

    # Largest document accepted by POST /documents: a file's own size, or a JSON body.
    max_upload_bytes: int = Field(default=1_048_576, ge=1)
    # Chunks are measured in characters; consecutive chunks share about `chunk_overlap` of them.
    chunk_size: int = Field(default=800, ge=50)
    chunk_overlap: int = Field(default=100, ge=0)
    batch_size: int = Field(default=64, ge=1, le=2048)
    # Search returns only chunks scoring above this cosine similarity. Scores are on each
    # model's own scale; for the hashing embedder, chunks sharing no word with the query
    # score about ±1/sqrt(dimension) (±0.044 at 512) from hash collisions alone.
    min_score: float = Field(default=0.1, ge=-1, lt=1)

    provider: Literal["hashing", "openai"] = "hashing"
    # Size of the offline hashing embedder's vectors (the HTTP provider's model decides its own).
    dimension: int = Field(default=512, ge=16, le=16_384)

    # OpenAI-compatible provider: OpenAI, Ollama (http://localhost:11434), vLLM, ...
    base_url: str = "https://api.openai.com"
    model: str = "text-embedding-3-small"
    api_key: SecretStr | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    retry_base_seconds: float = Field(default=0.5, ge=0)

    # Search index (see index.py). Below this many chunks a search compares the query with
    # every chunk (exact); from it on, it is approximate: a word index for the hashing
    # embedder (a query's few words share a little with thousands of chunks, which no graph
    # walk can rank), a usearch HNSW graph for a model's vectors (provider openai).
    ann_threshold: int = Field(default=20_000, ge=0)
    # How the graph stores vectors: i8 takes a quarter of f32's memory and builds faster here;
    # the results are scored again from the stored float32 vectors, so only recall can differ.
    ann_dtype: Literal["f32", "f16", "i8"] = "i8"
    # Candidates the graph walk keeps: more finds more of the true nearest, more slowly.
    ann_expansion_search: int = Field(default=512, ge=16, le=8192)
    # Where the index is saved, so a restart loads it instead of reading every chunk again.
    # Unset: next to the SQLite database file, or data/embeddings.index for other databases.
    index_path: Path | None = None
    # A changed index is saved again at most this often (in a background thread).
    index_save_seconds: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # Contradictions that would fail every upload or search, caught before the first one.
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"EMBEDDINGS_CHUNK_OVERLAP ({self.chunk_overlap}) must be smaller than "
                f"EMBEDDINGS_CHUNK_SIZE ({self.chunk_size}): set EMBEDDINGS_CHUNK_OVERLAP "
                f"below {self.chunk_size} (a fifth or less of it is usual), or "
                f"EMBEDDINGS_CHUNK_SIZE above {self.chunk_overlap}"
            )
        if self.provider == "openai" and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"EMBEDDINGS_BASE_URL={self.base_url!r} is not an HTTP URL: set it like "
                "EMBEDDINGS_BASE_URL=https://api.openai.com or http://localhost:11434"
            )
        return self


@settings_getter
@lru_cache
def get_embeddings_settings() -> EmbeddingsSettings:
    return EmbeddingsSettings()
