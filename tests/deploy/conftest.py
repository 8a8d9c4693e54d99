"""Fixtures of the deploy tests: a stand-in for the worker's /healthz."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest


class HealthServer(http.server.HTTPServer):
    """Answers GET /healthz with ``status``; anything else 404."""

    status = 200

    @property
    def port(self) -> int:
        return int(self.server_port)


class Answer(http.server.BaseHTTPRequestHandler):
    server: HealthServer

    def do_GET(self) -> None:
        self.send_response(self.server.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def health_server() -> Iterator[HealthServer]:
    server = HealthServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
