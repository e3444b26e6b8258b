"""Reads a document off the raw request: bounded in size, of an accepted type, and UTF-8 text."""

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message

from app.core.validation import cannot_carry, refuse_uncarriable
from app.features.embeddings.metrics import UPLOADS_REJECTED
from app.features.embeddings.models import SourceFormat
from app.features.embeddings.schemas import MAX_TITLE_LENGTH, DocumentIn

MEDIA_TYPES = {
    "text/plain": SourceFormat.TEXT,
    "text/markdown": SourceFormat.MARKDOWN,
    "text/x-markdown": SourceFormat.MARKDOWN,
}
EXTENSIONS = {
    ".txt": SourceFormat.TEXT,
    ".text": SourceFormat.TEXT,
    ".md": SourceFormat.MARKDOWN,
    ".markdown": SourceFormat.MARKDOWN,
}
# What clients send when they do not know the type (curl does this for .md files).
GENERIC_MEDIA_TYPES = {"", "application/octet-stream"}
ACCEPTED = (
    "send a .txt or .md file (text/plain or text/markdown) in the multipart field `file` "
    "(and optionally a `title` field), or JSON {title, text}"
)
# What a multipart body may carry beyond the file's own bytes: boundaries, part headers, a
# title. The size limit is the file's, so a file of exactly the limit is accepted.
MULTIPART_FRAMING_BYTES = 8192


@dataclass(frozen=True)
class Upload:
    title: str
    source_format: SourceFormat
    text: str
    size_bytes: int


class BodyTooLarge(Exception):
    """The body grew past the limit while it was being read."""


def rejected(status_code: int, reason: str, detail: str) -> HTTPException:
    UPLOADS_REJECTED.labels(reason).inc()
    # After a 413 the rest of the body is unread: closing the connection stops the server
    # from draining it, however long the client goes on sending.
    headers = {"Connection": "close"} if status_code == 413 else None
    return HTTPException(status_code, detail=detail, headers=headers)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def detect_format(filename: str | None, content_type: str | None) -> SourceFormat | None:
    """The format of an uploaded file from its declared type, or its extension when that is vague."""
    declared = media_type(content_type)
    by_extension = EXTENSIONS.get(PurePosixPath(filename or "").suffix.lower())
    if declared in GENERIC_MEDIA_TYPES:
        return by_extension
    if declared == "text/plain" and by_extension is SourceFormat.MARKDOWN:
        return SourceFormat.MARKDOWN
    return MEDIA_TYPES.get(declared)


def bounded(request: Request, limit: int) -> Request:
    """The same request, whose body raises `BodyTooLarge` as soon as more than `limit` bytes came.

    Content-Length can be absent (chunked encoding) or wrong, so bytes are counted as they
    arrive: an oversized body is never held in memory or spooled to disk.
    """
    received = 0
    receive: Callable[[], Awaitable[Message]] = request.receive

    async def counting_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
        return message

    return Request(request.scope, counting_receive)


def checked_text(text: str) -> str:
    if "\x00" in text:
        raise rejected(422, "invalid", "the document contains NUL characters: it is not text")
    if not text.strip():
        raise rejected(422, "invalid", "the document is empty")
    return text


async def read_upload(request: Request, limit: int) -> Upload:
    """The document in a multipart or JSON body; 413, 415 or 422 before anything is stored."""
    kind = media_type(request.headers.get("content-type"))
    if kind not in {"multipart/form-data", "application/json"}:
        raise rejected(415, "unsupported_type", f"unsupported content type {kind!r}: {ACCEPTED}")
    multipart = kind == "multipart/form-data"
    body_limit = limit + MULTIPART_FRAMING_BYTES if multipart else limit
    too_large = f"the upload exceeds the limit of {limit} bytes (EMBEDDINGS_MAX_UPLOAD_BYTES)"
    declared_length = request.headers.get("content-length", "")
    if declared_length.isdigit() and int(declared_length) > body_limit:
        raise rejected(413, "too_large", too_large)  # refused before reading a byte
    try:
        if multipart:
            return await read_multipart(bounded(request, body_limit), limit)
        return read_json(await bounded(request, body_limit).body())
    except BodyTooLarge:
        raise rejected(413, "too_large", too_large) from None


def read_json(body: bytes) -> Upload:
    # The rules the app applies to every other JSON body; this one is read here, by hand.
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        pass  # not JSON: DocumentIn's own parse below says where
    else:
        try:
            refuse_uncarriable(parsed)
        except RequestValidationError:
            UPLOADS_REJECTED.labels("invalid").inc()
            raise
    try:
        document = DocumentIn.model_validate_json(body)
    except ValidationError as exc:
        UPLOADS_REJECTED.labels("invalid").inc()
        # The same 422 body FastAPI gives for other JSON requests (without echoing the input).
        errors = exc.errors(include_url=False, include_input=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from None
    text = checked_text(document.text)
    return Upload(document.title, SourceFormat.TEXT, text, len(text.encode()))


async def read_multipart(request: Request, limit: int) -> Upload:
    try:
        form = await request.form(max_files=1, max_fields=1)
    except StarletteHTTPException as exc:  # Starlette's 400 for a body it cannot parse
        raise rejected(
            422, "invalid", f"the multipart body cannot be read ({exc.detail}): {ACCEPTED}"
        ) from None
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise rejected(422, "invalid", f"no file in the multipart field `file`: {ACCEPTED}")
        source_format = detect_format(file.filename, file.content_type)
        if source_format is None:
            raise rejected(
                415,
                "unsupported_type",
                f"unsupported file {file.filename!r} of type {file.content_type!r}: {ACCEPTED}",
            )
        data = await file.read()  # bounded: the whole body was capped
        title = form.get("title")
    finally:
        await form.close()  # the spooled file
    if len(data) > limit:
        raise BodyTooLarge
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise rejected(
            422, "invalid", f"the file is not UTF-8 text (invalid byte at offset {exc.start})"
        ) from None
    if not isinstance(title, str) or not title.strip():
        title = PurePosixPath(file.filename or "").name or "untitled"
    reason = cannot_carry(title)
    if reason is not None:  # a NUL in a title or file name was a 500 on PostgreSQL
        raise rejected(422, "invalid", f"the title {reason}")
    return Upload(title.strip()[:MAX_TITLE_LENGTH], source_format, checked_text(text), len(data))
