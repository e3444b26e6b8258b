"""Log lines: human-readable console text for development (JSON lines are the default)."""

import io
import logging
import re
import sys
from collections.abc import Callable, Iterator

import pytest

from app.core.logging import configure_logging, log_context

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
