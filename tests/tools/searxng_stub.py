"""A tiny SearxNG-compatible JSON search server on 127.0.0.1 for tests (stdlib only)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

RESULTS = [
    {"title": "Shoal (fish)", "url": "https://example.org/shoal", "content": "A shoal is a group of fish."},
    {"title": "Schooling", "url": "https://example.org/schooling", "content": "Schooling fish swim together."},
    {"title": "Shoal (sandbar)", "url": "https://example.org/sandbar", "content": "A sandbar in shallow water."},
]


@dataclass
class SearchStub:
    """What the stub answered and was asked."""

    url: str
    queries: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=lambda: list(RESULTS))
    status: int = 200


@contextmanager
def searxng_stub() -> Iterator[SearchStub]:
    """Serve ``GET /search?q=...&format=json`` until the block ends."""
    stub = SearchStub(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            query = parse_qs(parsed.query)
            if parsed.path != "/search" or query.get("format") != ["json"]:
                self.send_error(404)
                return
            stub.queries.append(query.get("q", [""])[0])
            body = json.dumps({"query": stub.queries[-1], "results": stub.results}).encode()
            self.send_response(stub.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
