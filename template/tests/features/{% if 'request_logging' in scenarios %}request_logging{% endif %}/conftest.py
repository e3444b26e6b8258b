"""Fixtures of the request-logging tests: recorder settings, waiting for records, log capture."""

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.logging import ContextFilter, JsonFormatter
from app.core.migrate import upgrade_to_heads
from app.features.request_logging.config import get_request_log_settings
from app.features.request_logging.service import write_records
from tests.features.request_logging.records import make_record


@pytest.fixture(autouse=True)
def request_log_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Flush every 20 ms so records show up fast; call it to set other `REQUEST_LOG_*` values."""

    def configure(**values: object) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"REQUEST_LOG_{name.upper()}", str(value))
        get_request_log_settings.cache_clear()

    configure(flush_interval_seconds=0.02)
    yield configure
    get_request_log_settings.cache_clear()


@pytest.fixture
def wait_for_records() -> Callable[..., list[dict[str, Any]]]:
    """Poll `GET /logs/requests` with `filters` until `count` records match; returns them."""

    def wait(
        client: TestClient,
        count: int = 1,
        timeout: float = 60.0,
        headers: dict[str, str] | None = None,  # an ops key, where keys are set
        **filters: Any,
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            params = {**filters, "limit": 500}
            page = client.get("/logs/requests", params=params, headers=headers).json()
            if page["total"] >= count:
                records: list[dict[str, Any]] = page["items"]
                return records
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{page['total']} of {count} records {filters} after {timeout}s"
                )
            time.sleep(0.01)

    return wait


class JsonLines(logging.Handler):
    """Keeps every log record as the JSON line the service writes for it."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(ContextFilter())
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def json_logs() -> Iterator[list[dict[str, Any]]]:
    """The JSON log lines written while the test runs (same filter and format as the service)."""
    handler = JsonLines()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler.lines
    root.removeHandler(handler)


@pytest.fixture
def insert_records() -> Callable[[list[dict[str, Any]]], None]:
    """Write records (given as overrides of `make_record`) straight to the database."""

    def insert(records: list[dict[str, Any]]) -> None:
        upgrade_to_heads()
        write_records([make_record(**record) for record in records])

    return insert
