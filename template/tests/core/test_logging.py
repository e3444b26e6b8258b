"""Log lines: console text for development (JSON lines are the default); no query strings."""

import io
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from app.core.logging import configure_logging, log_context, log_handler

ReadLines = Callable[[], list[str]]
# "2026-01-31 12:00:00,123 INFO    tests.core.logging: message"
CONSOLE_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<rest>.*)")


@pytest.fixture
def console_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[ReadLines]:
    """Logging set up as LOG_FORMAT=console does; returns the lines written so far."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)  # where the service writes its log lines
    root = logging.getLogger()
    before, level = set(root.handlers), root.level
    configure_logging("INFO", "console")
    added, replaced = set(root.handlers) - before, before - set(root.handlers)
    yield lambda: stderr.getvalue().splitlines()
    for handler in added:
        root.removeHandler(handler)
    for handler in replaced:
        root.addHandler(handler)
    root.setLevel(level)


def test_console_lines_are_text_with_the_request_and_job_ids_appended(
    console_logs: ReadLines,
) -> None:
    logger = logging.getLogger("tests.core.logging")

    with log_context(request_id="req-1", job_id="job-2"):
        logger.warning("sending %s", "mail")
    with log_context(request_id="req-3"):
        logger.info("request only")
    logger.info("no ids")
    lines = console_logs()

    assert [CONSOLE_LINE.fullmatch(line)["rest"] for line in lines] == [  # type: ignore[index]
        "WARNING tests.core.logging: sending mail [request_id=req-1 job_id=job-2]",
        "INFO    tests.core.logging: request only [request_id=req-3]",
        "INFO    tests.core.logging: no ids",
    ]


def test_the_ids_stay_on_the_message_line_above_a_traceback(console_logs: ReadLines) -> None:
    with log_context(request_id="req-9"):
        try:
            raise ValueError("broken input")
        except ValueError:
            logging.getLogger("tests.core.logging").exception("could not parse")
    lines = console_logs()

    assert lines[0].endswith("ERROR   tests.core.logging: could not parse [request_id=req-9]")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: broken input"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_access_log_keeps_no_query_string(tmp_path: Path) -> None:
    """The documented run command, for real: query strings carry emails, search terms, tokens."""
    port = free_port()
    log = tmp_path / "uvicorn.log"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/health?email=ada@example.com&token=s3cret", timeout=1
                )
                break
            except httpx.TransportError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(15)

    written = log.read_text()
    # Whatever /health says here (a render's cache may point at a Redis tests do not run).
    assert f'"GET /health HTTP/1.1" {answer.status_code}' in written
    assert "ada@example.com" not in written
    assert "s3cret" not in written


def test_task_arguments_celery_attaches_to_its_records_are_not_written() -> None:
    """Celery's "Task … received" records carry the job's arguments: what clients sent."""
    written = io.StringIO()
    handler = log_handler("json", written)
    record = logging.makeLogRecord(
        {
            "msg": "Task app.run_job[1] received",
            "data": {"id": "1", "args": "('secret content',)", "kwargs": "{'to': 'a@b.c'}"},
        }
    )

    handler.handle(record)

    line = written.getvalue()
    assert '"id": "1"' in line
    assert "secret content" not in line
    assert "a@b.c" not in line
