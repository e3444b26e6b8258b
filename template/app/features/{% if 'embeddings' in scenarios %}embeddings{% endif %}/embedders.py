"""Embedders behind one small interface: an offline feature-hashing one and an OpenAI-compatible HTTP one."""

import hashlib
import logging
import math
import random
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol

import httpx
import numpy as np

from app.features.embeddings.config import EmbeddingsSettings, get_embeddings_settings
from app.tasks import PermanentError

logger = logging.getLogger(__name__)


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text."""

    @property
    def model(self) -> str: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbeddingProviderError(PermanentError):
    """The provider refused the request or answered something unusable: retrying cannot help."""


class EmbeddingProviderUnavailable(Exception):
    """The provider stayed rate-limited or down through every retry: the job retries later.

    `retry_after` is the wait in seconds the provider asked for last, if it named one.
    """

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """Unit-length rows (zero rows stay zero), so a dot product is the cosine similarity."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)


# Words too common to tell topics apart; they would only add noise to every vector.
STOP_WORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    }
)
WORD = re.compile(r"\w+")
NGRAM_SIZES = (3, 4)


def _stable_hash(feature: str) -> int:
    # blake2b, never hash(): Python salts str hashes per process, so an API process and a
    # worker would put the same word in different buckets.
    digest = hashlib.blake2b(feature.encode(), digest_size=8, person=b"emb-hash-v1").digest()
    return int.from_bytes(digest, "little")


@lru_cache(maxsize=200_000)
def _word_features(word: str, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    """Buckets and signed weights of a word and its character n-grams (cached: words repeat)."""
    padded = f"<{word}>"
    grams = [padded[i : i + n] for n in NGRAM_SIZES for i in range(len(padded) - n + 1)]
    # The word itself weighs 1; its n-grams together weigh about as much, so shared stems
    # ("bake", "baking") bring texts closer without drowning exact word matches.
    features = [f"w:{word}"] + [f"g:{gram}" for gram in grams]
    weights = [1.0] + [1.0 / math.sqrt(len(grams))] * len(grams)
    hashes = [_stable_hash(feature) for feature in features]
    buckets = np.array([h % dimension for h in hashes], dtype=np.int64)
    # The top bit picks a sign, so colliding features cancel out on average instead of adding up.
    signs = np.array([1.0 if h >> 63 else -1.0 for h in hashes])
    return buckets, signs * np.array(weights)


def word_counts(text: str) -> Counter[str]:
    """The words the hashing embedder sees in `text`, with how often each occurs."""
    words = WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    return Counter(word for word in words if word not in STOP_WORDS)


def word_weight(count: int) -> float:
    """Sublinear term frequency: a word repeated ten times is not ten times as telling."""
    return 1.0 + math.log(count)


HASHING_MODEL = "hashing-blake2b-v1"


class HashingEmbedder:
    """Offline and deterministic: feature hashing over words and character n-grams.

    A text's vector is the normalised sum of its words' feature vectors, each weighted by
    `word_weight` of its count: the search index relies on that (see index.WordStore).
    """

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension

    @property
    def model(self) -> str:
        return HASHING_MODEL

    def word_features(self, word: str) -> tuple[np.ndarray, np.ndarray]:
        """The buckets a word adds to, and the signed weight it adds to each."""
        return _word_features(word, self.dimension)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float64)
        for row, text in enumerate(texts):
            counts = word_counts(text)
            if not counts:
                continue
            buckets, weights = zip(
                *(_word_features(word, self.dimension) for word in counts), strict=True
            )
            scale = np.repeat([word_weight(n) for n in counts.values()], [len(b) for b in buckets])
            vectors[row] = np.bincount(
                np.concatenate(buckets),
                weights=np.concatenate(weights) * scale,
                minlength=self.dimension,
            )
        return normalise_rows(vectors)


EXPECTED_BODY = '{"data": [{"index": int, "embedding": [float, ...]}, ...]}'
RETRYABLE_STATUS = frozenset({408, 429, *range(500, 600)})
MAX_RETRY_AFTER_SECONDS = 30.0


def retry_after_seconds(header: str | None) -> float | None:
    """A Retry-After header's wait in seconds; None when absent or an HTTP date."""
    try:
        seconds = float(header or "")
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class OpenAIEmbedder:
    """`POST {base_url}/v1/embeddings` (OpenAI, Ollama, vLLM...), retrying 429/5xx with backoff.

    `max_retries` defaults to EMBEDDINGS_MAX_RETRIES.
    """

    def __init__(self, settings: EmbeddingsSettings, max_retries: int | None = None) -> None:
        self.settings = settings
        self.max_retries = settings.max_retries if max_retries is None else max_retries
        self.url = settings.base_url.rstrip("/") + "/v1/embeddings"

    @property
    def model(self) -> str:
        return self.settings.model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        body = self._post({"model": self.model, "input": list(texts)})
        return normalise_rows(self._parse(body, len(texts)))

    def _post(self, payload: dict[str, Any]) -> Any:
        headers = {}
        if self.settings.api_key is not None:
            headers["Authorization"] = f"Bearer {self.settings.api_key.get_secret_value()}"
        attempts = self.max_retries + 1
        with httpx.Client(timeout=self.settings.timeout_seconds, headers=headers) as client:
            for attempt in range(1, attempts + 1):
                try:
                    response = client.post(self.url, json=payload)
                except httpx.TransportError as exc:  # timeouts, refused connections...
                    problem, retry_after = f"{type(exc).__name__}: {exc}", None
                else:
                    if response.status_code not in RETRYABLE_STATUS:
                        return self._json(response)
                    problem = f"HTTP {response.status_code}: {response.text[:200]}"
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                if attempt == attempts:
                    break
                delay = self._delay(attempt, retry_after)
                logger.warning(
                    "embedding provider failed (%s), retry %d/%d in %.2fs",
                    problem,
                    attempt,
                    attempts - 1,
                    delay,
                )
                time.sleep(delay)
        raise EmbeddingProviderUnavailable(
            f"embedding provider at {self.url} still failing after {attempts} attempt(s): "
            f"{problem}",
            retry_after,
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """The server's Retry-After when it gives seconds, else exponential backoff with jitter."""
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_SECONDS)
        step = self.settings.retry_base_seconds * 2.0 ** (attempt - 1)
        return step / 2 + random.uniform(0, step / 2)

    def _json(self, response: httpx.Response) -> Any:
        if response.is_error:
            raise EmbeddingProviderError(
                f"embedding provider at {self.url} refused the request: "
                f"HTTP {response.status_code}: {response.text[:500]}"
            )
        try:
            return response.json()
        except ValueError:
            raise EmbeddingProviderError(
                f"malformed response from {self.url}: not JSON: {response.text[:200]!r}"
            ) from None

    def _parse(self, body: Any, expected: int) -> np.ndarray:
        """The vectors of an OpenAI-style `{"data": [{"index", "embedding"}]}` body, in input order."""
        try:
            pairs = [(item["index"], item["embedding"]) for item in body["data"]]
        except (KeyError, TypeError) as exc:
            raise self._malformed(f"expected {EXPECTED_BODY} ({exc!r})") from None
        indexes = [index for index, _ in pairs]
        # Each index once and none missing, or some input would get another one's vector.
        if not all(type(i) is int for i in indexes) or sorted(indexes) != [*range(len(pairs))]:
            raise self._malformed(f"indexes {indexes[:20]} are not 0..{len(pairs) - 1}, each once")
        try:
            vectors = np.array([vector for _, vector in sorted(pairs)], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise self._malformed(f"expected {EXPECTED_BODY} ({exc!r})") from None
        if vectors.ndim != 2 or vectors.shape[0] != expected or vectors.shape[1] == 0:
            raise self._malformed(f"{expected} input(s) gave vectors of shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise self._malformed("non-finite values")
        return vectors

    def _malformed(self, problem: str) -> EmbeddingProviderError:
        return EmbeddingProviderError(f"malformed response from {self.url}: {problem}")


def get_embedder() -> Embedder:
    """The embedder chosen by EMBEDDINGS_PROVIDER, for background jobs: retries included."""
    settings = get_embeddings_settings()
    if settings.provider == "openai":
        return OpenAIEmbedder(settings)
    return HashingEmbedder(settings.dimension)


def get_query_embedder() -> Embedder:
    """The same embedder for a request: one try, as waiting out retries would hold it open."""
    settings = get_embeddings_settings()
    if settings.provider == "openai":
        return OpenAIEmbedder(settings, max_retries=0)
    return HashingEmbedder(settings.dimension)
