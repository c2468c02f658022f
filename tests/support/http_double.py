"""What the HTTP API doubles share: a quiet JSON request handler and a loopback server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON and keeps request lines out of test output."""

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serve_on_loopback(api: Any, handler: type[BaseHTTPRequestHandler]) -> Iterator[Any]:
    """Serve `handler` (which reads its state from `self.api`) on a free loopback port;
    yields `api` with `api.url` set, and stops the server afterwards."""
    bound = type("Handler", (handler,), {"api": api})
    server = ThreadingHTTPServer(("127.0.0.1", 0), bound)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
