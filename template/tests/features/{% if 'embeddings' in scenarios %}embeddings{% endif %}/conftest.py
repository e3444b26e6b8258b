"""Fixtures of the embeddings tests: settings, stored-row counts, a real /v1/embeddings server."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.core.database import get_engine
from app.features.embeddings.config import get_embeddings_settings
from app.features.embeddings.models import Chunk, Document
from app.jobs.models import Job
from tests.features.embeddings.fake_provider import EmbeddingsServer, running_server

Configure = Callable[..., None]


@pytest.fixture(autouse=True)
def fresh_embeddings_settings() -> Iterator[None]:
    get_embeddings_settings.cache_clear()
    yield
    get_embeddings_settings.cache_clear()


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Configure:
    """Set EMBEDDINGS_* settings for this test: `configure(chunk_size=50)`."""

    def set_values(**values: Any) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"EMBEDDINGS_{name.upper()}", str(value))
        get_embeddings_settings.cache_clear()

    return set_values


@pytest.fixture
def stored_rows() -> Callable[[], dict[str, int]]:
    """How many documents, chunks and jobs the database holds."""

    def count() -> dict[str, int]:
        with get_engine().connect() as connection:
            return {
                table.__tablename__: connection.execute(
                    select(func.count()).select_from(table)
                ).scalar_one()
                for table in (Document, Chunk, Job)
            }

    return count


@pytest.fixture
def upload(client: TestClient) -> Callable[..., dict[str, Any]]:
    """POST a JSON document; returns the 202 body."""

    def post(text: str, title: str = "doc") -> dict[str, Any]:
        response = client.post("/documents", json={"title": title, "text": text})
        assert response.status_code == 202, response.text
        accepted: dict[str, Any] = response.json()
        return accepted

    return post


@pytest.fixture
def provider(configure: Configure) -> Iterator[EmbeddingsServer]:
    """The fake provider, selected by settings (EMBEDDINGS_PROVIDER=openai, batches of 4)."""
    with running_server() as server:
        configure(
            provider="openai",
            base_url=server.base_url,
            model="test-embedder",
            api_key="sk-test",
            batch_size=4,
            retry_base_seconds=0.01,
            timeout_seconds=5,
        )
        yield server
