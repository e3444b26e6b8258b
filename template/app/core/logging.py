"""Structured logging: JSON lines (or console text) carrying the request id and job id."""

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

from opentelemetry import trace

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
job_id_var: ContextVar[str | None] = ContextVar("job_id", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged.
_RECORD_FIELDS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class ContextFilter(logging.Filter):
    """Stamps each record with the ids of the request and job it belongs to."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Ids passed explicitly with `extra=` win over the ambient ones.
        record.request_id = getattr(record, "request_id", None) or request_id_var.get()
        record.job_id = getattr(record, "job_id", None) or job_id_var.get()
        # The span the line was written in (tracing on): a log search finds the trace.
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            record.trace_id = format(span.trace_id, "032x")
            record.span_id = format(span.span_id, "016x")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, ready for a log pipeline."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    """Human-readable lines for development, ids appended when present."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        # The message line, before any traceback: the ids belong on it, not after the trace.
        line = super().formatMessage(record)
        ids = [
            f"{name}={value}"
            for name in ("request_id", "job_id", "trace_id")
            if (value := getattr(record, name, None))
        ]
        return f"{line} [{' '.join(ids)}]" if ids else line


class WithoutJobArguments(logging.Filter):
    """Drops the arguments and result Celery attaches to its task log records (`data`).

    A job's arguments carry what clients sent (message contents, people's ids), and a JSON
    line prints every attribute of a record: log lines name jobs by id only.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        if isinstance(data, dict):
            hidden = {"args", "kwargs", "return_value"}
            record.data = {key: value for key, value in data.items() if key not in hidden}
        return True


class WithoutQueryString(logging.Filter):
    """Takes the query string off uvicorn's access-log lines.

    Query strings carry what clients put there: search terms, emails, now and then a
    token. The access log keeps the method, the path and the status.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn logs (client, method, path with query, HTTP version, status).
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], args[2].partition("?")[0], args[3], args[4])
        return True


def log_handler(fmt: str = "json", stream: TextIO | None = None) -> logging.Handler:
    """The handler the service writes its log lines with (to stderr unless told otherwise)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(WithoutJobArguments())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(ConsoleFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    return handler


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = log_handler(fmt)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_app_handler", False)]:
        root.removeHandler(old)
    handler._app_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    access = logging.getLogger("uvicorn.access")
    for stale in [f for f in access.filters if isinstance(f, WithoutQueryString)]:
        access.removeFilter(stale)
    access.addFilter(WithoutQueryString())


@contextmanager
def log_context(*, request_id: str | None = None, job_id: str | None = None) -> Iterator[None]:
    """Carry ids into every log line written inside the block (and asyncio tasks it starts)."""
    tokens = [request_id_var.set(request_id), job_id_var.set(job_id)]
    try:
        yield
    finally:
        job_id_var.reset(tokens[1])
        request_id_var.reset(tokens[0])
