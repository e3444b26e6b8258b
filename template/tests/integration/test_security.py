"""The service as deployed: keys in production, and bodies refused before they fill memory."""

import select
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.conftest import Process

pytestmark = pytest.mark.integration

CLIENT_KEY = "integration-client-key-0123456789"
OPS_KEY = "integration-ops-key-0123456789"
CHUNK = b"a" * 65_536
HUNDRED_MIB = 100 * 1024 * 1024


def test_production_serves_keyed_callers_only(
    start_api: Callable[..., tuple[Process, str]],
) -> None:
    _, base_url = start_api(
        worker=False, ENVIRONMENT="production", API_KEYS=CLIENT_KEY, OPS_API_KEYS=OPS_KEY
    )

    def get(path: str, key: str | None = None) -> int:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.get(f"{base_url}{path}", headers=headers, timeout=5).status_code

    job = "/jobs/00000000-0000-0000-0000-000000000000"
    assert get("/health") == 200
    assert (get(job), get(job, "not-a-key-of-ours-at-all"), get(job, CLIENT_KEY)) == (401, 401, 404)
    assert get("/docs") == get("/openapi.json") == 404


def memory_kib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (the peak) of a process, in KiB (Linux)."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        pytest.skip("reads process memory from /proc (Linux)")
    for line in status.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in {status}")


def reset_peak(pid: int) -> None:
    """Start VmHWM afresh from the current RSS, so it measures what comes next only."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pytest.skip("cannot reset the peak memory of a process here")


def post_chunked(base_url: str, total: int) -> tuple[int, int]:
    """POST `total` bytes in chunks until the server answers; (status, bytes sent)."""
    parts = urlsplit(base_url)
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            b"POST /samples/echo HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        frame = b"%x\r\n" % len(CHUNK) + CHUNK + b"\r\n"
        answer = b""
        while sent < total:
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if readable:
                answer = sock.recv(65_536)
                break
            if writable:
                try:
                    sock.sendall(frame)
                except (BrokenPipeError, ConnectionResetError):
                    answer = sock.recv(65_536)
                    break
                sent += len(CHUNK)
        deadline = time.monotonic() + 10
        while b"\r\n" not in answer and time.monotonic() < deadline:
            answer += sock.recv(65_536)
    return int(answer.split(b" ", 2)[1]), sent


def test_a_huge_chunked_body_is_refused_without_growing_the_server(
    start_api: Callable[..., tuple[Process, str]],
) -> None:
    process, base_url = start_api(worker=False)  # only the API reads request bodies
    assert process.popen is not None
    pid = process.popen.pid
    httpx.get(f"{base_url}/health", timeout=5)  # warm up
    before = memory_kib(pid, "VmRSS")
    reset_peak(pid)

    status, sent = post_chunked(base_url, HUNDRED_MIB)
    grown_mib = (memory_kib(pid, "VmHWM") - before) / 1024

    assert status == 413
    assert sent < HUNDRED_MIB / 4  # the server stopped taking it long before the end
    assert grown_mib < 32, f"the server's peak memory grew {grown_mib:.1f} MiB"
