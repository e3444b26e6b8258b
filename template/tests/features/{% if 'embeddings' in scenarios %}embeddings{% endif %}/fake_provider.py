"""A real HTTP server on loopback speaking OpenAI's `/v1/embeddings`, with scripted failures."""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app.features.embeddings.embedders import HashingEmbedder

DIMENSION = 32


@dataclass
class EmbeddingsServer:
    """What the fake provider received, and the failures it must answer with next."""

    base_url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    script: list[str] = field(default_factory=list)  # next answers; "ok" once it is empty
    always: str = "ok"  # the answer once the script ran out
    retry_after: str = "0"  # the Retry-After header of a 429

    def next_answer(self) -> str:
        return self.script.pop(0) if self.script else self.always


def answer(
    handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(payload)


def serve(server: EmbeddingsServer, handler: BaseHTTPRequestHandler) -> None:
    """The OpenAI `/v1/embeddings` contract, or the scripted failure."""
    body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
    server.requests.append(body)
    server.headers.append(dict(handler.headers))
    inputs = body["input"]
    match server.next_answer():
        case "429":
            answer(
                handler,
                429,
                {"error": {"message": "slow down"}},
                {"Retry-After": server.retry_after},
            )
        case "500":
            answer(handler, 500, {"error": {"message": "model crashed"}})
        case "slow":
            time.sleep(0.5)
            answer(handler, 503, {"error": {"message": "too late anyway"}})
        case "401":
            answer(handler, 401, {"error": {"message": "invalid api key"}})
        case "malformed":
            answer(handler, 200, {"data": [{"index": 0, "vector": [1.0]}]})
        case "not json":
            answer(handler, 200, b"<html>proxy error</html>")
        case "wrong count":
            answer(handler, 200, {"data": [{"index": 0, "embedding": [1.0, 0.0]}]})
        case "repeated index":  # two vectors for input 0, none for input 1
            data = [{"index": 0, "embedding": [1.0, 0.0]}, {"index": 0, "embedding": [0.0, 1.0]}]
            answer(handler, 200, {"data": data})
        case "index gap":
            data = [{"index": 0, "embedding": [1.0, 0.0]}, {"index": 2, "embedding": [0.0, 1.0]}]
            answer(handler, 200, {"data": data})
        case _:
            vectors = HashingEmbedder(DIMENSION).embed(inputs)
            data = [
                {"object": "embedding", "index": i, "embedding": vector.tolist()}
                for i, vector in enumerate(vectors)
            ]
            # Reversed: clients must order vectors by `index`, not by position.
            answer(handler, 200, {"object": "list", "model": body["model"], "data": data[::-1]})


@contextmanager
def running_server() -> Iterator[EmbeddingsServer]:
    """Serve on a free port in a thread until the block ends."""
    state = EmbeddingsServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/v1/embeddings":
                answer(self, 404, {"error": {"message": f"no route {self.path}"}})
                return
            serve(state, self)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that timed out and hung up is expected, not an error

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
