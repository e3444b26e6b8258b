"""A small HTTP/1.1 keep-alive load generator, run in its own process, printing JSON stats."""

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

RESPONSE = (
    b'HTTP/1.1 200 OK\r\ncontent-length: 11\r\ncontent-type: application/json\r\n\r\n{"ok":true}'
)


async def connection(
    host: str,
    port: int,
    request: bytes,
    deadline: float,
    latencies: list[float],
    statuses: Counter[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (started := time.perf_counter()) < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses[int(head[9:12])] += 1
    finally:
        writer.close()


async def drive(url: str, method: str, concurrency: int, duration: float) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"{method} {parts.path or '/'} HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Length: 0\r\nContent-Type: application/json\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(
        *(
            connection(host, port, request, deadline, latencies, statuses)
            for _ in range(concurrency)
        )
    )
    elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": quantiles[49] * 1000,
        "p99_ms": quantiles[98] * 1000,
        "statuses": {str(code): count for code, count in statuses.items()},
    }


async def serve(port: int) -> None:
    """A server that answers instantly: driving it shows the load generator's own ceiling."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(RESPONSE)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", nargs="?")
    parser.add_argument("--method", default="POST")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--serve", type=int, metavar="PORT", help="run the instant server instead")
    args = parser.parse_args()
    run = asyncio.run
    try:
        import uvloop  # installed with uvicorn[standard]; the client must not be the bottleneck

        run = uvloop.run
    except ImportError:
        pass
    if args.serve:
        run(serve(args.serve))
    else:
        json.dump(run(drive(args.url, args.method, args.concurrency, args.duration)), sys.stdout)


if __name__ == "__main__":
    main()
