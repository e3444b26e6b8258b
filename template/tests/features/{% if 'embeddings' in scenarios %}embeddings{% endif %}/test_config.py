"""Embeddings settings: values that cannot work together are refused, saying what to set."""

import pytest
from pydantic import ValidationError

from app.features.embeddings.config import EmbeddingsSettings


@pytest.mark.parametrize("overlap", [800, 900])
def test_an_overlap_not_below_the_chunk_size_is_refused(overlap: int) -> None:
    with pytest.raises(ValidationError) as raised:
        EmbeddingsSettings(chunk_size=800, chunk_overlap=overlap)

    message = str(raised.value)
    assert f"EMBEDDINGS_CHUNK_OVERLAP ({overlap}) must be smaller than" in message
    assert "set EMBEDDINGS_CHUNK_OVERLAP below 800" in message


def test_the_openai_provider_needs_an_http_url() -> None:
    with pytest.raises(ValidationError, match="is not an HTTP URL: set it like"):
        EmbeddingsSettings(provider="openai", base_url="localhost:11434")


@pytest.mark.parametrize("min_score", [-1.5, 1.0])
def test_a_minimum_score_outside_the_cosine_range_is_refused(min_score: float) -> None:
    with pytest.raises(ValidationError, match="min_score"):
        EmbeddingsSettings(min_score=min_score)
