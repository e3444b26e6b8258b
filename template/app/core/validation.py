"""Input rules every feature shares, and a bounded 422 answer that can show any rejected input."""

import json
import math
from typing import Annotated, Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator


def no_nul(text: str) -> str:
    """Refuse the NUL character: PostgreSQL cannot store it in text, so it must be a 422."""
    if "\x00" in text:
        raise ValueError("must not contain the NUL character (\\u0000)")
    return text


# A string every supported database stores and compares: for any text a client sends.
StorableStr = Annotated[str, AfterValidator(no_nul)]


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as text: JSON has no such numbers to send them back."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
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
