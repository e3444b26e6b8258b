"""`/documents`: uploads, processing status, search, and refusals that store nothing."""

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.types import Message

from app.core.config import get_security_settings
from app.features.embeddings import service
from app.features.embeddings.models import SourceFormat
from app.features.embeddings.tasks import process_document
from app.features.embeddings.upload import MULTIPART_FRAMING_BYTES
from app.features.embeddings.upload import Upload as UploadedText
from app.tasks import RUNS_IN_API_PROCESS
from tests.features.embeddings.fake_provider import EmbeddingsServer
from tests.sample_work import create_sample_app

Wait = Callable[..., dict[str, Any]]
Configure = Callable[..., None]
Upload = Callable[..., dict[str, Any]]
Rows = Callable[[], dict[str, int]]

NOTHING_STORED = {"documents": 0, "document_chunks": 0, "jobs": 0}
WORDS = " ".join(f"w{i:03d}" for i in range(100))  # 499 characters

CORPUS = {
    "bread": "Sourdough bread needs a lively starter. Knead the dough, let it rise overnight, "
    "shape the loaf and bake it in a very hot oven until the crust is dark and crisp.",
    "volcano": "Volcanoes form where magma rises through the crust. During an eruption, lava, "
    "ash and volcanic gases escape; basalt lava flows can run for kilometres.",
    "chess": "In chess, the opening decides the middle game. Develop knights and bishops "
    "early, castle to protect the king, and fight for the centre squares.",
    "marathon": "Training for a marathon means weekly long runs, easy recovery jogs and "
    "tapering before race day. Runners carry water and energy gels.",
    "photosynthesis": "Photosynthesis lets plants turn sunlight, water and carbon dioxide "
    "into glucose and oxygen inside the chloroplasts of green leaves.",
}
QUERIES = {
    "how long should I bake sourdough loaves": "bread",
    "kneading dough": "bread",
    "lava and ash from an erupting volcano": "volcano",
    "best chess opening to protect the king": "chess",
    "preparing for race day with long runs": "marathon",
    "how do plants use sunlight": "photosynthesis",
}


def ready(client: TestClient, wait_for_job: Wait, accepted: dict[str, Any]) -> dict[str, Any]:
    assert wait_for_job(accepted["job_id"])["status"] == "succeeded"
    document: dict[str, Any] = client.get(f"/documents/{accepted['id']}").json()
    assert document["status"] == "ready"
    return document


def search(client: TestClient, query: str, limit: int = 5) -> list[dict[str, Any]]:
    response = client.post("/documents/search", json={"query": query, "limit": limit})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def test_json_document_becomes_ready_with_the_expected_chunk_count(
    client: TestClient, wait_for_job: Wait, upload: Upload, configure: Configure
) -> None:
    configure(chunk_size=50, chunk_overlap=10, dimension=64)

    accepted = upload(WORDS, title="words")
    assert accepted["status"] == "queued"
    document = ready(client, wait_for_job, accepted)

    # Ten 4-letter words per 50-character chunk, two shared: starts at words 0, 8, ..., 96.
    assert document["chunk_count"] == 13
    assert document["title"] == "words"
    assert document["source_format"] == "text"
    assert document["embedding_model"] == "hashing-blake2b-v1"
    assert document["embedding_dimension"] == 64
    assert document["job_id"] == accepted["job_id"]


@pytest.mark.skipif(not RUNS_IN_API_PROCESS, reason="on Celery a worker's sweep publishes it")
def test_a_document_whose_process_died_after_the_commit_is_still_processed(
    short_lease: float, client: TestClient, wait_for_job: Wait
) -> None:
    # What `POST /documents` commits, never handed over: the state a process killed right
    # after the commit leaves. The live app takes the job over once its lease runs out.
    upload = UploadedText("words", SourceFormat.TEXT, WORDS, len(WORDS))
    document_id, job = service.create_document(upload, process_document)

    document = ready(client, wait_for_job, {"id": str(document_id), "job_id": str(job.id)})

    assert document["chunk_count"] > 0


def test_markdown_file_is_parsed_and_searchable_as_text(
    client: TestClient, wait_for_job: Wait
) -> None:
    markdown = b"# Tides\n\nThe **moon's** gravity pulls the [oceans](https://x.test) into tides.\n"
    # curl sends .md files as application/octet-stream: the extension decides.
    response = client.post(
        "/documents", files={"file": ("tides.md", markdown, "application/octet-stream")}
    )
    assert response.status_code == 202, response.text

    document = ready(client, wait_for_job, response.json())
    best = search(client, "moon gravity tides", limit=1)[0]

    assert (document["title"], document["source_format"]) == ("tides.md", "markdown")
    assert document["size_bytes"] == len(markdown)
    assert best["document_id"] == document["id"]
    assert best["text"] == "Tides\n\nThe moon's gravity pulls the oceans into tides."


def test_text_file_takes_the_title_field_and_drops_a_byte_order_mark(
    client: TestClient, wait_for_job: Wait
) -> None:
    response = client.post(
        "/documents",
        files={"file": ("notes.txt", "\ufeffPlain *text* stays.".encode(), "text/plain")},
        data={"title": "My notes"},
    )
    document = ready(client, wait_for_job, response.json())

    assert (document["title"], document["source_format"]) == ("My notes", "text")
    assert search(client, "plain text", limit=1)[0]["text"] == "Plain *text* stays."


def test_unknown_document_is_404_and_a_malformed_id_422(client: TestClient) -> None:
    missing = client.get(f"/documents/{uuid.uuid4()}")

    assert missing.status_code == 404
    assert "not found" in missing.json()["detail"]
    assert client.get("/documents/not-a-uuid").status_code == 422


@pytest.fixture
def corpus(client: TestClient, wait_for_job: Wait, upload: Upload) -> dict[str, str]:
    """The fixed corpus, ready to search: topic of each document id."""
    return {
        ready(client, wait_for_job, upload(text, title=topic))["id"]: topic
        for topic, text in CORPUS.items()
    }


def test_each_query_finds_the_right_document_first(
    client: TestClient, corpus: dict[str, str]
) -> None:
    found = {query: corpus[search(client, query)[0]["document_id"]] for query in QUERIES}

    assert found == QUERIES


@pytest.mark.parametrize(
    "query", ["moon", "the and of", "xylophone quartet"], ids=["unrelated", "stop-words", "absent"]
)
def test_a_query_matching_nothing_finds_nothing(
    client: TestClient, corpus: dict[str, str], query: str
) -> None:
    assert search(client, query) == []


def test_weak_matches_are_left_out_unless_the_minimum_score_is_lowered(
    client: TestClient, corpus: dict[str, str], configure: Configure
) -> None:
    found = search(client, "bake bread in a hot oven", limit=50)
    configure(min_score=-1)  # every chunk, hash-collision noise included
    everything = search(client, "bake bread in a hot oven", limit=50)

    assert [corpus[hit["document_id"]] for hit in found] == ["bread"]
    assert found[0]["score"] > 0.1  # EMBEDDINGS_MIN_SCORE's default
    assert len(everything) == len(CORPUS)


def test_results_are_best_first_within_the_limit_and_carry_their_chunk(
    client: TestClient, wait_for_job: Wait, upload: Upload, configure: Configure
) -> None:
    configure(chunk_size=60, chunk_overlap=10)
    bread = ready(client, wait_for_job, upload(CORPUS["bread"]))
    for topic in ("volcano", "chess", "marathon"):
        ready(client, wait_for_job, upload(CORPUS[topic]))

    query = "sourdough starter, kneaded dough, a loaf with a crisp crust"
    results = search(client, query, limit=2)

    assert len(search(client, query, limit=50)) > len(results) == 2
    assert [hit["score"] for hit in results] == sorted(
        (hit["score"] for hit in results), reverse=True
    )
    assert set(results[0]) == {"document_id", "chunk_index", "text", "score"}
    assert results[0]["document_id"] == bread["id"]
    assert results[0]["text"] in CORPUS["bread"]
    assert bread["chunk_count"] > 1


def test_search_sees_only_ready_documents(
    client: TestClient, wait_for_job: Wait, upload: Upload
) -> None:
    # Markup only: nothing is left to embed, so the document fails.
    failed = client.post("/documents", files={"file": ("rule.md", b"---\n***\n", "text/markdown")})
    job = wait_for_job(failed.json()["job_id"])
    document = client.get(f"/documents/{failed.json()['id']}").json()

    assert job["status"] == "failed"
    assert document["status"] == "failed"
    assert "no text left" in document["error"]
    assert search(client, "anything at all") == []


@pytest.mark.parametrize("limit", [0, 51, "many"])
def test_limit_out_of_range_is_422(client: TestClient, limit: object) -> None:
    response = client.post("/documents/search", json={"query": "bread", "limit": limit})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "limit"]


@pytest.mark.parametrize("query", ["", "   "])
def test_blank_query_is_422(client: TestClient, query: str) -> None:
    assert client.post("/documents/search", json={"query": query}).status_code == 422


BAD_UPLOADS: dict[str, tuple[int, dict[str, Any], str]] = {
    "a PDF file": (
        415,
        {"files": {"file": ("report.pdf", b"%PDF-1.7", "application/pdf")}},
        "unsupported file 'report.pdf'",
    ),
    "a file without a known extension": (
        415,
        {"files": {"file": ("data.bin", b"text", "application/octet-stream")}},
        "unsupported file",
    ),
    "a raw CSV body": (
        415,
        {"content": b"a,b\n1,2\n", "headers": {"Content-Type": "text/csv"}},
        "unsupported content type 'text/csv'",
    ),
    "no content type": (415, {"content": b"text"}, "unsupported content type ''"),
    "an empty file": (422, {"files": {"file": ("empty.txt", b"", "text/plain")}}, "empty"),
    "a blank file": (422, {"files": {"file": ("blank.md", b" \n\t\n", "text/markdown")}}, "empty"),
    "a Latin-1 file": (
        422,
        {"files": {"file": ("latin1.txt", "caf\u00e9".encode("latin-1"), "text/plain")}},
        "not UTF-8 text (invalid byte at offset 3)",
    ),
    "a binary file named .txt": (
        422,
        {"files": {"file": ("image.txt", b"\x00\x01\x02binary", "text/plain")}},
        "NUL characters",
    ),
    "a form without the file field": (
        422,
        {"data": {"title": "no file"}, "files": {"other": ("a.txt", b"x", "text/plain")}},
        "multipart field `file`",
    ),
    "a form with an unexpected field": (
        422,
        {"data": {"title": "t", "tags": "x"}, "files": {"file": ("a.txt", b"x", "text/plain")}},
        "the multipart body cannot be read (Too many fields",
    ),
    "a form with two files": (
        422,
        {
            "files": [
                ("file", ("a.txt", b"x", "text/plain")),
                ("file", ("b.txt", b"y", "text/plain")),
            ]
        },
        "the multipart body cannot be read (Too many files",
    ),
    "multipart without a boundary": (
        422,
        {"content": b"file=x", "headers": {"Content-Type": "multipart/form-data"}},
        "the multipart body cannot be read (Missing boundary",
    ),
    "multipart that is not multipart": (
        422,
        {"content": b"garbage", "headers": {"Content-Type": "multipart/form-data; boundary=b"}},
        "the multipart body cannot be read",
    ),
    "JSON with blank text": (422, {"json": {"title": "t", "text": "  \n"}}, "non-whitespace"),
    "JSON without a title": (422, {"json": {"text": "some text"}}, "Field required"),
    "JSON with a NUL character": (422, {"json": {"title": "t", "text": "a\u0000b"}}, "NUL"),
    "JSON with a lone surrogate": (
        422,
        {
            "content": b'{"title": "t", "text": "\\ud800"}',
            "headers": {"Content-Type": "application/json"},
        },
        "lone surrogate",
    ),
    "multipart with a NUL in the title": (
        422,
        {"files": {"file": ("a.txt", b"some text")}, "data": {"title": "a\u0000b"}},
        "the title must not contain the NUL character",
    ),
    "JSON with a NUL in an extra key": (
        422,
        {
            "content": b'{"title": "t", "text": "x", "\\u0000": 1}',
            "headers": {"Content-Type": "application/json"},
        },
        "NUL",
    ),
    "malformed JSON": (
        422,
        {"content": b'{"title": ', "headers": {"Content-Type": "application/json"}},
        "Invalid JSON",
    ),
}


@pytest.mark.parametrize("case", BAD_UPLOADS)
def test_bad_upload_is_refused_and_stores_nothing(
    client: TestClient, stored_rows: Rows, case: str
) -> None:
    status, request, message = BAD_UPLOADS[case]

    response = client.post("/documents", **request)

    assert response.status_code == status, response.text
    assert message in json.dumps(response.json()["detail"])
    assert stored_rows() == NOTHING_STORED


def test_upload_over_the_limit_is_413_and_stores_nothing(
    client: TestClient, stored_rows: Rows, configure: Configure
) -> None:
    body = json.dumps({"title": "t", "text": "x" * 500}).encode()
    configure(max_upload_bytes=len(body) - 1)

    json_response = client.post(
        "/documents", content=body, headers={"Content-Type": "application/json"}
    )
    file_response = client.post("/documents", files={"file": ("big.txt", b"x" * 600)})

    assert json_response.status_code == file_response.status_code == 413
    assert f"limit of {len(body) - 1} bytes" in json_response.json()["detail"]
    assert stored_rows() == NOTHING_STORED


def test_uploads_keep_their_own_limit_above_max_request_bytes(
    client: TestClient, configure: Configure, monkeypatch: pytest.MonkeyPatch, wait_for_job: Wait
) -> None:
    monkeypatch.setenv("MAX_REQUEST_BYTES", "1000")
    get_security_settings.cache_clear()
    configure(max_upload_bytes=5000)
    with TestClient(create_sample_app()) as small_bodies:
        upload = small_bodies.post("/documents", files={"file": ("a.txt", b"x" * 4000)})
        search = small_bodies.post("/documents/search", json={"query": "x" * 2000, "limit": 1})

    assert upload.status_code == 202
    assert search.status_code == 413
    wait_for_job(upload.json()["job_id"])


def test_upload_of_exactly_the_limit_is_accepted(
    client: TestClient, configure: Configure, wait_for_job: Wait
) -> None:
    body = json.dumps({"title": "t", "text": "x" * 500}).encode()
    configure(max_upload_bytes=len(body))

    response = client.post("/documents", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 202
    wait_for_job(response.json()["job_id"])


def test_a_file_of_exactly_the_limit_is_accepted_and_one_byte_more_is_413(
    client: TestClient, configure: Configure, wait_for_job: Wait, stored_rows: Rows
) -> None:
    configure(max_upload_bytes=1000)

    exact = client.post(
        "/documents", files={"file": ("a.txt", b"x" * 1000)}, data={"title": "exactly"}
    )
    over = client.post("/documents", files={"file": ("b.txt", b"x" * 1001)})

    assert exact.status_code == 202, exact.text  # its multipart framing is not counted
    assert over.status_code == 413
    assert "limit of 1000 bytes" in over.json()["detail"]
    assert wait_for_job(exact.json()["job_id"])["status"] == "succeeded"
    assert stored_rows()["documents"] == 1


CHUNK = b"x" * 1024
GIVE_UP_AFTER = 64 * 1024 * 1024  # a correct endpoint stops reading long before this


def post_endless_body(client: TestClient, headers: dict[str, str], start: bytes) -> tuple[int, int]:
    """POST /documents straight to the ASGI app: `start`, then a document that never ends.

    TestClient reads a streamed body whole before the app sees it, so this talks ASGI
    directly. Returns the response status and how many bytes the app pulled.
    """
    pulled = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal pulled
        if pulled >= GIVE_UP_AFTER:
            return {"type": "http.disconnect"}
        body = CHUNK if pulled else start + CHUNK
        pulled += len(body)
        return {"type": "http.request", "body": body, "more_body": True}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/documents",
        "raw_path": b"/documents",
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": client.app_state.copy(),  # what the lifespan yielded, as a server passes it
    }
    assert client.portal is not None
    client.portal.call(client.app, scope, receive, send)
    answer = next(message for message in sent if message["type"] == "http.response.start")
    status: int = answer["status"]
    return status, pulled


JSON_START = b'{"title": "endless", "text": "'
MULTIPART_START = (
    b"--b\r\n"
    b'Content-Disposition: form-data; name="file"; filename="endless.txt"\r\n'
    b"Content-Type: text/plain\r\n\r\n"
)


@pytest.mark.parametrize(
    ("headers", "start", "framing"),
    [
        ({"Content-Type": "application/json", "Transfer-Encoding": "chunked"}, JSON_START, 0),
        (
            {"Content-Type": "multipart/form-data; boundary=b", "Transfer-Encoding": "chunked"},
            MULTIPART_START,
            MULTIPART_FRAMING_BYTES,
        ),
        ({"Content-Type": "application/json", "Content-Length": "100"}, JSON_START, 0),  # a lie
    ],
    ids=["chunked-json", "chunked-multipart", "lying-content-length"],
)
def test_body_without_a_trustworthy_length_is_cut_off_at_the_limit(
    client: TestClient,
    stored_rows: Rows,
    configure: Configure,
    headers: dict[str, str],
    start: bytes,
    framing: int,
) -> None:
    configure(max_upload_bytes=10_000)

    status, pulled = post_endless_body(client, headers, start)

    assert status == 413
    # Stopped at the first chunk past the limit (plus the fixed allowance for framing).
    assert pulled <= 10_000 + framing + len(start) + len(CHUNK)
    assert stored_rows() == NOTHING_STORED


def test_metrics_count_refusals_and_searches(client: TestClient) -> None:
    client.post("/documents", content=b"x", headers={"Content-Type": "text/csv"})
    search(client, "anything")

    body = client.get("/metrics").text

    assert 'embeddings_uploads_rejected_total{reason="unsupported_type"}' in body
    assert "embeddings_search_seconds_count" in body


def test_openapi_describes_both_upload_bodies(client: TestClient) -> None:
    body = client.get("/openapi.json").json()["paths"]["/documents"]["post"]["requestBody"]

    assert body["content"]["multipart/form-data"]["schema"]["required"] == ["file"]
    assert body["content"]["application/json"]["schema"]["required"] == ["title", "text"]


def test_search_reports_a_refusing_provider_as_502(
    client: TestClient, provider: EmbeddingsServer
) -> None:
    provider.always = "401"

    response = client.post("/documents/search", json={"query": "anything"})

    assert response.status_code == 502
    assert "HTTP 401" in response.json()["detail"]


@pytest.mark.parametrize(
    ("answer", "retry_after", "problem"),
    [("429", "7", "HTTP 429"), ("500", "5", "HTTP 500"), ("slow", "5", "ReadTimeout")],
    ids=["rate-limited", "down", "timing-out"],
)
def test_search_answers_503_after_one_try_when_the_provider_cannot_answer(
    client: TestClient,
    configure: Configure,
    provider: EmbeddingsServer,
    answer: str,
    retry_after: str,
    problem: str,
) -> None:
    configure(timeout_seconds=0.2)  # the "slow" provider answers after 0.5 s
    provider.always, provider.retry_after = answer, "7"

    response = client.post("/documents/search", json={"query": "anything"})

    assert response.status_code == 503
    assert response.headers["retry-after"] == retry_after  # the provider's 429 names a wait
    detail = response.json()["detail"]
    assert f"try again in {retry_after} s" in detail
    assert problem in detail
    assert len(provider.requests) == 1  # the retries (EMBEDDINGS_MAX_RETRIES=3) are for jobs
