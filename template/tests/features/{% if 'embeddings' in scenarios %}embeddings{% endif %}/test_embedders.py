"""The offline hashing embedder and the OpenAI-compatible HTTP provider."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app.features.embeddings.config import get_embeddings_settings
from app.features.embeddings.embedders import (
    EmbeddingProviderError,
    EmbeddingProviderUnavailable,
    HashingEmbedder,
    OpenAIEmbedder,
    get_embedder,
    get_query_embedder,
)
from tests.features.embeddings.fake_provider import DIMENSION, EmbeddingsServer

PROJECT_ROOT = Path(__file__).resolve().parents[3]
Configure = Callable[..., None]
TEXT = "The quick brown fox jumps over the lazy dog, then naps in the sun."


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_hashing_vectors_are_unit_length_float32_of_the_configured_dimension(
    configure: Configure,
) -> None:
    configure(dimension=128)

    vectors = get_embedder().embed([TEXT, "another text"])

    assert vectors.shape == (2, 128)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


def test_hashing_ignores_case_and_unicode_composition() -> None:
    embedder = HashingEmbedder(64)

    a, b = embedder.embed(["Caf\u00e9 au lait", "CAFE\u0301 AU LAIT"])

    assert np.array_equal(a, b)


def test_related_texts_are_closer_than_unrelated_ones() -> None:
    bread, baking, lava = HashingEmbedder(512).embed(
        [
            "Knead the dough and bake the bread.",
            "Baking bread: kneading dough, baked loaves.",
            "The volcano erupted and lava flowed.",
        ]
    )

    assert cosine(bread, baking) > cosine(bread, lava) + 0.2


def test_text_of_stop_words_only_gives_a_zero_vector() -> None:
    assert not HashingEmbedder(64).embed(["the and of", ""]).any()


EMBED_IN_A_CHILD = (
    "import sys\n"
    "from app.features.embeddings.embedders import HashingEmbedder\n"
    "print(hash(sys.argv[1]))\n"
    "print(HashingEmbedder(256).embed([sys.argv[1]]).tobytes().hex())\n"
)


def test_same_text_gives_identical_vectors_in_another_process() -> None:
    # Another process with its own str-hash salt, as an API process and a worker would be.
    child = subprocess.run(
        [sys.executable, "-c", EMBED_IN_A_CHILD, TEXT],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONHASHSEED": "random"},
        capture_output=True,
        text=True,
        check=True,
    )
    child_hash, child_vector = child.stdout.split()

    assert int(child_hash) != hash(TEXT)  # Python's hash() disagrees across processes...
    assert bytes.fromhex(child_vector) == HashingEmbedder(256).embed([TEXT]).tobytes()  # ours not


def embedder() -> OpenAIEmbedder:
    return OpenAIEmbedder(get_embeddings_settings())


def test_provider_sends_model_inputs_and_key_and_keeps_input_order(
    provider: EmbeddingsServer,
) -> None:
    texts = ["first text", "second text", "third text"]

    vectors = embedder().embed(texts)

    assert provider.requests == [{"model": "test-embedder", "input": texts}]
    assert provider.headers[0]["Authorization"] == "Bearer sk-test"
    # The server answers in reverse order; rows still follow the inputs.
    assert np.allclose(vectors, HashingEmbedder(DIMENSION).embed(texts))


def test_provider_retries_rate_limits_and_server_errors(provider: EmbeddingsServer) -> None:
    provider.script = ["429", "500"]

    vectors = embedder().embed(["text"])

    assert vectors.shape == (1, DIMENSION)
    assert len(provider.requests) == 3


def test_provider_retries_a_timeout(provider: EmbeddingsServer, configure: Configure) -> None:
    configure(timeout_seconds=0.1)
    provider.script = ["slow"]

    assert embedder().embed(["text"]).shape == (1, DIMENSION)
    assert len(provider.requests) == 2


def test_provider_down_through_every_retry_is_a_transient_error(
    provider: EmbeddingsServer, configure: Configure
) -> None:
    configure(max_retries=2)
    provider.always = "500"

    with pytest.raises(EmbeddingProviderUnavailable, match=r"after 3 attempt.*HTTP 500"):
        embedder().embed(["text"])
    assert len(provider.requests) == 3


def test_the_query_embedder_tries_once_and_passes_on_the_wait_asked_for(
    provider: EmbeddingsServer,
) -> None:
    provider.always, provider.retry_after = "429", "7"

    with pytest.raises(EmbeddingProviderUnavailable, match=r"after 1 attempt.*HTTP 429") as raised:
        get_query_embedder().embed(["text"])

    assert raised.value.retry_after == 7
    assert len(provider.requests) == 1  # EMBEDDINGS_MAX_RETRIES=3 is for background jobs


def test_provider_refusal_is_permanent_and_not_retried(provider: EmbeddingsServer) -> None:
    provider.script = ["401"]

    with pytest.raises(EmbeddingProviderError, match=r"HTTP 401.*invalid api key"):
        embedder().embed(["text"])
    assert len(provider.requests) == 1


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("malformed", "malformed response .* expected"),
        ("not json", "malformed response .* not JSON"),
        ("wrong count", r"malformed response .* 2 input\(s\) gave vectors of shape \(1, 2\)"),
        ("repeated index", r"malformed response .* indexes \[0, 0\] are not 0..1, each once"),
        ("index gap", r"malformed response .* indexes \[0, 2\] are not 0..1, each once"),
    ],
)
def test_malformed_answers_are_permanent_errors(
    provider: EmbeddingsServer, answer: str, message: str
) -> None:
    provider.script = [answer]

    with pytest.raises(EmbeddingProviderError, match=message):
        embedder().embed(["one", "two"])
