"""Pure ASGI middleware that records every HTTP request, failures included, without waiting."""

import logging
import time
from datetime import datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.database import utcnow
from app.core.logging import request_id_var
from app.features.request_logging.models import (
    CLIENT_LENGTH,
    METHOD_LENGTH,
    PATH_LENGTH,
    ROUTE_LENGTH,
    USER_AGENT_LENGTH,
)
from app.features.request_logging.service import STATE_KEY, Record, RequestRecorder

logger = logging.getLogger(__name__)


class RequestLogMiddleware:
    """Hands one record per HTTP request to the app's recorder, which writes it later.

    It must sit inside `RequestIdMiddleware` (added before it), so the request id is set.
    Not `BaseHTTPMiddleware`: that one breaks context variables and background tasks.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        recorder: RequestRecorder | None = scope.get("state", {}).get(STATE_KEY)
        if scope["type"] != "http" or recorder is None:  # no recorder outside a lifespan
            await self.app(scope, receive, send)
            return
        created_at = utcnow()
        started = time.perf_counter()
        answered: float | None = None  # when the last byte of the response was handed over
        status = 500  # what the client gets if the app raises before answering

        async def send_and_capture(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered = time.perf_counter()

        try:
            await self.app(scope, receive, send_and_capture)
        except Exception:
            status = 500  # even if a streamed response had started: it did not complete
            # Starlette's own error log cannot know the request id; this line carries it.
            logger.exception("unhandled error answering %s %s", scope["method"], scope["path"])
            raise
        finally:
            # The latency the client saw: background tasks run after the answer, and a
            # request must not look as slow as the work it handed over.
            latency_ms = round(((answered or time.perf_counter()) - started) * 1000, 3)
            recorder.add(describe(scope, status, latency_ms, created_at))


def describe(scope: Scope, status: int, latency_ms: float, created_at: datetime) -> Record:
    """The record of one request, cut to the column sizes so it can never fail its batch."""
    route = getattr(scope.get("route"), "path", None)  # set by the router once it matched
    client = scope.get("client")
    user_agent = next(
        (value.decode("latin-1") for name, value in scope["headers"] if name == b"user-agent"),
        None,
    )
    return {
        "request_id": request_id_var.get() or "",
        "method": scope["method"][:METHOD_LENGTH],
        "route": route[:ROUTE_LENGTH] if route else None,
        "path": scope["path"][:PATH_LENGTH],
        "status": status,
        "latency_ms": latency_ms,
        "client": client[0][:CLIENT_LENGTH] if client else None,
        "user_agent": user_agent[:USER_AGENT_LENGTH] if user_agent else None,
        "created_at": created_at,
    }
