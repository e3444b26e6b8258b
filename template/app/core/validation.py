"""Input rules every feature shares, and a 422 answer that can show any rejected input."""

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


async def request_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own 422 body, which it fails to send (a 500) when the input held NaN or 1e400.

    Python's JSON parser reads `NaN`, `Infinity` and numbers too large for a float; the
    errors echo that input, and a strict JSON response cannot carry it.
    """
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": json_safe(jsonable_encoder(exc.errors()))}, status_code=422)
