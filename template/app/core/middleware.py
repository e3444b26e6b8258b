"""Request ids: a pure ASGI middleware that gives every request one, returned as `X-Request-ID`."""

import logging
import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
