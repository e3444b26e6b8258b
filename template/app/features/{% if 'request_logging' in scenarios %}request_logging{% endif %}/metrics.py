"""Prometheus metrics of the request recorder."""

from prometheus_client import Counter

RECORDS_WRITTEN = Counter(
    "request_log_records_written",
    "Request records written to the database",
)
RECORDS_DROPPED = Counter(
    "request_log_records_dropped",
    "Request records lost before reaching the database: the oldest, when the buffer is full"
    " (overflow), or what a failing database left at shutdown (shutdown)",
    ["reason"],
)
