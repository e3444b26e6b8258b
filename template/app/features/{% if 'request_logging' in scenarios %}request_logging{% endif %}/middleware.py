"""Pure ASGI middleware that records every HTTP request, failures included, without waiting."""

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
            raise  # answered and logged with the request id by `app.core.middleware`
        finally:
            # The latency the client saw: background tasks run after the answer, and a
            # request must not look as slow as the work it handed over.
            latency_ms = round(((answered or time.perf_counter()) - started) * 1000, 3)
            recorder.add(describe(scope, status, latency_ms, created_at))


def fit(text: str, length: int) -> str:
    """`text` as its column takes it: cut to `length`, NUL (refused by PostgreSQL) replaced."""
    return text.replace("\x00", "\ufffd")[:length]


def describe(scope: Scope, status: int, latency_ms: float, created_at: datetime) -> Record:
    """The record of one request, made to fit its columns so it can never fail its batch.

    A batch is retried as a whole: one record the database refuses (a `%00` in a path)
    would otherwise keep every later record out of the database.
    """
    route = getattr(scope.get("route"), "path", None)  # set by the router once it matched
    client = scope.get("client")
    user_agent = next(
        (value.decode("latin-1") for name, value in scope["headers"] if name == b"user-agent"),
        None,
    )
    return {
        "request_id": request_id_var.get() or "",
        "method": fit(scope["method"], METHOD_LENGTH),
        "route": fit(route, ROUTE_LENGTH) if route else None,
        "path": fit(scope["path"], PATH_LENGTH),
        "status": status,
        "latency_ms": latency_ms,
        "client": fit(client[0], CLIENT_LENGTH) if client else None,
        "user_agent": fit(user_agent, USER_AGENT_LENGTH) if user_agent else None,
        "created_at": created_at,
    }
