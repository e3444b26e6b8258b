"""The `embeddings.process_document` unit of work, on the hashing embedder and the HTTP provider."""

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.features.embeddings.tasks import process_document
from tests.features.embeddings.fake_provider import DIMENSION, EmbeddingsServer

Wait = Callable[..., dict[str, Any]]
Configure = Callable[..., None]
Upload = Callable[..., dict[str, Any]]
Rows = Callable[[], dict[str, int]]

WORDS = " ".join(f"w{i:03d}" for i in range(100))  # 13 chunks of 50 characters, 10 shared


def test_running_the_unit_again_replaces_chunks_without_duplicates(
    client: TestClient, wait_for_job: Wait, upload: Upload, configure: Configure, stored_rows: Rows
) -> None:
    configure(chunk_size=50, chunk_overlap=10)
    accepted = upload(WORDS)
    first = wait_for_job(accepted["job_id"])["result"]

    again = process_document.fn(document_id=accepted["id"])  # as a redelivered job would

    assert again == first
    assert first["chunk_count"] == 13
    assert stored_rows()["document_chunks"] == 13
    assert client.get(f"/documents/{accepted['id']}").json()["status"] == "ready"


def test_provider_embeds_chunks_in_batches(
    client: TestClient,
    wait_for_job: Wait,
    upload: Upload,
    configure: Configure,
    provider: EmbeddingsServer,
) -> None:
    configure(chunk_size=50, chunk_overlap=10)  # 13 chunks, batches of 4

    accepted = upload(WORDS)
    job = wait_for_job(accepted["job_id"])
    document = client.get(f"/documents/{accepted['id']}").json()

    assert job["status"] == "succeeded"
    assert [len(request["input"]) for request in provider.requests] == [4, 4, 4, 1]
    assert {request["model"] for request in provider.requests} == {"test-embedder"}
    assert (document["status"], document["chunk_count"]) == ("ready", 13)
    assert (document["embedding_model"], document["embedding_dimension"]) == (
        "test-embedder",
        DIMENSION,
    )


def test_search_embeds_the_query_with_the_provider(
    client: TestClient, wait_for_job: Wait, upload: Upload, provider: EmbeddingsServer
) -> None:
    accepted = upload("Glaciers carve valleys as the ice slowly moves downhill.")
    wait_for_job(accepted["job_id"])

    response = client.post("/documents/search", json={"query": "glacier ice", "limit": 1})

    assert response.json()["results"][0]["document_id"] == accepted["id"]
    assert provider.requests[-1]["input"] == ["glacier ice"]


def test_rate_limited_provider_is_retried_within_the_attempt(
    client: TestClient, wait_for_job: Wait, upload: Upload, provider: EmbeddingsServer
) -> None:
    provider.script = ["429"]

    job = wait_for_job(upload("A short note about rivers and deltas.")["job_id"])

    assert job["status"] == "succeeded"
    assert job["attempts"] == 1
    assert len(provider.requests) == 2  # the 429, then the same batch again


def test_provider_down_through_its_retries_fails_the_attempt_and_the_job_retries(
    client: TestClient,
    wait_for_job: Wait,
    upload: Upload,
    configure: Configure,
    provider: EmbeddingsServer,
) -> None:
    configure(max_retries=1)
    provider.script = ["500", "500"]  # both tries of the first attempt

    accepted = upload("A short note about mountains.")
    job = wait_for_job(accepted["job_id"])

    assert job["status"] == "succeeded"
    assert job["attempts"] == 2
    assert client.get(f"/documents/{accepted['id']}").json()["status"] == "ready"


@pytest.mark.parametrize("answer", ["malformed", "repeated index"])
def test_malformed_provider_response_fails_the_job_and_the_document_clearly(
    client: TestClient,
    wait_for_job: Wait,
    upload: Upload,
    provider: EmbeddingsServer,
    stored_rows: Rows,
    answer: str,
) -> None:
    provider.script = [answer]

    accepted = upload("A short note about deserts.")
    job = wait_for_job(accepted["job_id"])
    document = client.get(f"/documents/{accepted['id']}").json()

    assert job["status"] == "failed"
    assert job["attempts"] == 1  # retrying cannot fix the provider's answer
    assert f"malformed response from {provider.base_url}/v1/embeddings" in job["error"]
    assert document["status"] == "failed"
    assert "malformed response" in document["error"]
    assert stored_rows()["document_chunks"] == 0


def test_document_is_failed_when_the_job_runs_out_of_attempts(
    client: TestClient,
    wait_for_job: Wait,
    upload: Upload,
    configure: Configure,
    provider: EmbeddingsServer,
) -> None:
    configure(max_retries=0)
    provider.always = "500"

    accepted = upload("A short note about forests.")
    job = wait_for_job(accepted["job_id"])
    document = client.get(f"/documents/{accepted['id']}").json()

    assert (job["status"], job["attempts"]) == ("failed", 3)
    assert document["status"] == "failed"
    assert "HTTP 500" in document["error"]
