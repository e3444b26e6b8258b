"""Pure ASGI middleware: a request id for every request (`X-Request-ID`), and a body limit."""

import logging
import re
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from starlette import status
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import get_security_settings
from app.core.logging import request_id_var

logger = logging.getLogger(__name__)

HEADER = "X-Request-ID"
# A caller's id is kept only when it is short and plain, so it is safe in logs and headers.
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def incoming_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _SANE_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Honours a sane incoming `X-Request-ID` or makes one; sets it for logs and jobs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope)
        # Also kept in the scope's state, where `internal_error` finds it after we ended.
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


async def internal_error(request: Request, exc: Exception) -> Response:
    """The 500 for an unhandled exception, carrying the request's id and logged with it.

    Starlette answers unhandled exceptions from its outermost middleware, which sends
    through the server's own `send`, outside `RequestIdMiddleware`: without this handler
    the 500 would carry no `X-Request-ID`, and no log line would tie the error to it.
    """
    request_id: str | None = getattr(request.state, "request_id", None)
    logger.error(
        "unhandled error answering %s %s",
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"request_id": request_id},
    )
    headers = {HEADER: request_id} if request_id else None
    return PlainTextResponse("Internal Server Error", status_code=500, headers=headers)


_OWN_BODY_LIMIT = "_bounds_its_own_body"
E = TypeVar("E", bound=Callable[..., Any])


def bounds_its_own_body(endpoint: E) -> E:
    """Exempt an endpoint from MAX_REQUEST_BYTES: it reads its body by hand, under a limit of
    its own (an upload larger than other requests may be)."""
    setattr(endpoint, _OWN_BODY_LIMIT, True)
    return endpoint


def reads_its_own_body(scope: Scope) -> bool:
    """Whether the endpoint routing chose for this request is marked `bounds_its_own_body`."""
    endpoint = getattr(scope.get("route"), "endpoint", None)
    return bool(getattr(endpoint, _OWN_BODY_LIMIT, False))


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body is over the limit; FastAPI answers it as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"The request body is larger than {limit} bytes (MAX_REQUEST_BYTES)",
            # The rest of the body stays unread: closing the connection stops the server
            # from draining it, however long the client goes on sending.
            headers={"Connection": "close"},
        )


class BodyLimitMiddleware:
    """413 for a request body over `max_bytes`, before it is read whole.

    A declared Content-Length over the limit is refused before a byte is read; a chunked
    body (or one whose Content-Length lies) is counted as it arrives and refused as soon as
    it passes the limit, so no more than about `max_bytes` of it is ever held in memory.
    The check happens when the app first asks for the body, once routing has chosen the
    endpoint: one marked `bounds_its_own_body` reads it under its own limit instead.
    """

    def __init__(self, app: ASGIApp, max_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = (
            get_security_settings().max_request_bytes if max_bytes is None else max_bytes
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        received = 0
        exempt: bool | None = None  # known at the first read, when the route is
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exempt
            if exempt is None:
                exempt = reads_its_own_body(scope)
                declared = Headers(scope=scope).get("content-length", "")
                if not exempt and declared.isdigit() and int(declared) > limit:
                    raise BodyTooLarge(limit)
            message = await receive()
            if not exempt and message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:
            # Read by code outside FastAPI's exception handling (another middleware).
            if started:
                raise
            response = JSONResponse({"detail": exc.detail}, exc.status_code, exc.headers)
            await response(scope, receive, send)
