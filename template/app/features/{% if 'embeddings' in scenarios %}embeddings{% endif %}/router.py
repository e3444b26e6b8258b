"""`/documents`: upload text or Markdown, follow its processing, and search the embedded chunks."""

import math
import uuid

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from app.core.middleware import bounds_its_own_body
from app.core.rate_limit import RateLimit
from app.core.security import ClientScope
from app.features.embeddings import index, service
from app.features.embeddings.config import get_embeddings_settings
from app.features.embeddings.embedders import (
    EmbeddingProviderError,
    EmbeddingProviderUnavailable,
    get_query_embedder,
)
from app.features.embeddings.models import DocumentStatus
from app.features.embeddings.schemas import (
    DocumentAccepted,
    DocumentIn,
    DocumentRead,
    SearchRequest,
    SearchResults,
)
from app.features.embeddings.tasks import process_document
from app.features.embeddings.upload import read_upload
from app.tasks import TaskQueueDep

router = APIRouter(prefix="/documents", tags=["documents"], dependencies=[ClientScope])

# The body is read by hand (to cap its size while it streams), so describe it for OpenAPI.
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "A .txt or .md file, UTF-8",
                        },
                        "title": {"type": "string", "description": "Defaults to the file name"},
                    },
                }
            },
            "application/json": {"schema": DocumentIn.model_json_schema()},
        },
    }
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra=UPLOAD_BODY,
    responses={
        413: {"description": "Larger than EMBEDDINGS_MAX_UPLOAD_BYTES"},
        415: {"description": "Not a .txt/.md file, nor multipart or JSON"},
        422: {"description": "Empty, not UTF-8 text, or a malformed multipart or JSON body"},
    },
    dependencies=[RateLimit],
)
@bounds_its_own_body  # EMBEDDINGS_MAX_UPLOAD_BYTES, not MAX_REQUEST_BYTES
async def upload_document(request: Request, queue: TaskQueueDep) -> DocumentAccepted:
    """Store the document and embed it in the background; poll `GET /documents/{id}`."""
    upload = await read_upload(request, get_embeddings_settings().max_upload_bytes)
    # The document and its processing job commit together: no crash leaves one without the
    # other. Should the process die before handing it over, the job is recovered.
    document_id, job = await run_in_threadpool(service.create_document, upload, process_document)
    await queue.dispatch(job)
    return DocumentAccepted(id=document_id, status=DocumentStatus.QUEUED, job_id=job.id)


@router.get("/{document_id}", responses={404: {"description": "Unknown document"}})
def read_document(document_id: uuid.UUID) -> DocumentRead:
    document = service.get_document(document_id)
    if document is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"Document {document_id} not found")
    return document


# Seconds a client is asked to wait when the provider is down and named no wait itself.
DEFAULT_RETRY_AFTER_SECONDS = 5


@router.post(
    "/search",
    responses={
        502: {"description": "The embedding provider answered with an error"},
        503: {"description": "The embedding provider is unreachable or rate-limited"},
    },
    # Each search embeds its query: with the openai provider, a call that may be billed.
    dependencies=[RateLimit],
)
def search_documents(body: SearchRequest) -> SearchResults:
    """Chunks of `ready` documents scoring above EMBEDDINGS_MIN_SCORE, best first."""
    settings = get_embeddings_settings()
    try:
        # One try at the provider: the client, not this request, waits out a rate limit.
        results = index.search(body.query, body.limit, get_query_embedder(), settings.min_score)
    except EmbeddingProviderError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, detail=str(exc)) from None
    except EmbeddingProviderUnavailable as exc:
        wait = DEFAULT_RETRY_AFTER_SECONDS
        if exc.retry_after is not None:
            wait = max(1, math.ceil(exc.retry_after))  # the provider's own wait, in whole seconds
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"Search cannot embed the query now, try again in {wait} s: {exc}",
            headers={"Retry-After": str(wait)},
        ) from None
    return SearchResults(results=results)
