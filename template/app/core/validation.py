"""Input rules every feature shares, and a bounded 422 answer that can show any rejected input."""

import json
import math
import re
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator

from app.core.middleware import reads_its_own_body

# The deepest JSON body (objects and arrays inside each other) any endpoint accepts. Every
# layer a value passes through recurses over it: Celery's prefork pool pickles a task's
# arguments to hand them to a child, and a structure deep enough to exhaust the recursion
# limit there kills the worker's main process, before any job code runs, on every
# redelivery. 32 is far more than any real document needs and far below every such limit.
MAX_JSON_DEPTH = 32

# NUL: PostgreSQL cannot store it in text. Lone surrogates (U+D800-U+DFFF, which JSON's
# "\ud800" escape can produce): no UTF-8 encoder can write them, not a database driver, a
# JSON response, a log line or a broker message.
_UNCARRIABLE = re.compile("[\x00\ud800-\udfff]")


def cannot_carry(text: str) -> str | None:
    """Why a database or protocol cannot carry `text`, or None when every one can."""
    found = _UNCARRIABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "must not contain the NUL character (\\u0000)"
    return f"must not contain a lone surrogate (\\u{ord(found.group()):04x}): it is not text"


def storable(text: str) -> str:
    """Refuse text a database or protocol cannot carry: a 422 instead of a 500 later."""
    reason = cannot_carry(text)
    if reason is not None:
        raise ValueError(reason)
    return text


# A string every supported database stores and compares: for any text a client sends.
StorableStr = Annotated[str, AfterValidator(storable)]

Location = tuple[str | int, ...]


def first_uncarriable(value: Any, max_depth: int = MAX_JSON_DEPTH) -> tuple[Location, str] | None:
    """Where in a parsed JSON value the first part no layer can carry sits, and why; or None.

    That is a nesting deeper than `max_depth`, or text (a value or a key) that
    `cannot_carry`. The walk is iterative: a value too deep to recurse over is what it looks for.
    """
    stack: list[tuple[Any, Location, int]] = [(value, (), 1)]
    while stack:
        item, location, depth = stack.pop()
        if isinstance(item, str):
            reason = cannot_carry(item)
            if reason is not None:
                return location, reason
            continue
        if isinstance(item, dict):
            children: list[tuple[str | int, Any]] = []
            for key, child in item.items():
                reason = cannot_carry(key)
                if reason is not None:
                    return (*location, key), f"a key {reason}"
                children.append((key, child))
        elif isinstance(item, list):
            children = list(enumerate(item))
        else:
            continue
        if depth > max_depth:
            return location, f"is nested deeper than {max_depth} levels of objects and arrays"
        # Reversed, so the first problem in document order is the one reported.
        stack.extend((child, (*location, key), depth + 1) for key, child in reversed(children))
    return None


def refuse_uncarriable(body: Any) -> None:
    """Raise the 422 for a parsed JSON body `first_uncarriable` finds fault with."""
    found = first_uncarriable(body)
    if found is not None:
        location, reason = found
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body", *location), "msg": f"Value error, {reason}"}]
        )


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def check_json_body(request: Request) -> None:
    """422 for a JSON body that is too deep or holds text no layer can carry, naming where.

    It applies to every route, so no endpoint can forget it: FastAPI parsed the body
    already, and `request.json()` hands back that parse. An endpoint that reads its own
    body (an upload streamed under its own limit) is skipped: reading the body here would
    leave it nothing to read, and it checks what it parses itself.
    """
    if reads_its_own_body(request.scope) or not is_json(request.headers.get("content-type")):
        return
    if not await request.body():
        return
    try:
        body = await request.json()
    except (ValueError, RecursionError):
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error", "input": {}}]
        ) from None
    refuse_uncarriable(body)


# Declared by the app for every route (see app/main.py).
JsonBodyRules = Depends(check_json_body)


def escape_surrogates(text: str) -> str:
    """`text` with any lone surrogate written as its escape, so UTF-8 (and JSON) can carry it."""
    if _UNCARRIABLE.search(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def json_safe(value: Any) -> Any:
    """`value` as strict UTF-8 JSON can carry it: NaN and infinities as text, lone surrogates
    (in keys too) escaped. It is for echoing rejected input back, which may hold either."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return escape_surrogates(value)
    if isinstance(value, dict):
        return {json_safe(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value


# A 422 shows this much of each rejected input, and this many errors: enough to see the
# mistake, never the whole (up to MAX_REQUEST_BYTES) body sent back, or copied into logs.
EXCERPT_CHARS = 100
MAX_ERRORS = 20


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> Any:
    """`value` if it is short as JSON, else the start of its JSON text (or of the text) and "…"."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + "…"
    try:
        encoded = json.dumps(value, default=str, allow_nan=True)
    except (TypeError, ValueError):
        encoded = repr(value)
    return value if len(encoded) <= limit else encoded[:limit] + "…"


def short_error(error: dict[str, Any]) -> dict[str, Any]:
    """One validation error with its input, location and message cut to an excerpt."""
    short = {**error, "loc": [excerpt(part) for part in error.get("loc", ())]}
    if "input" in error:
        short["input"] = excerpt(error["input"])
    if isinstance(error.get("msg"), str):
        short["msg"] = excerpt(error["msg"], 4 * EXCERPT_CHARS)
    return short


async def request_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own 422 body, bounded, and strict JSON.

    FastAPI echoes each rejected input whole: a 1 MiB string came back in full, once per
    error. Here inputs are cut to an excerpt and the errors to the first MAX_ERRORS
    (`error_count` says how many there were). Python's JSON parser reads `NaN`, `Infinity`
    and numbers too large for a float: those go back as text, which a strict JSON
    response can carry.
    """
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    detail = [short_error(dict(error)) for error in errors[:MAX_ERRORS]]
    body: dict[str, Any] = {"detail": json_safe(jsonable_encoder(detail))}
    if len(errors) > MAX_ERRORS:
        body["error_count"] = len(errors)
    return JSONResponse(body, status_code=422)
