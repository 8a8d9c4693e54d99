"""The worker's HTTP endpoint: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``.

It runs on a thread of its own (prometheus-client's threading WSGI server), not on the
event loop: a stalled loop must still get an answer from the liveness probe, and a
scrape must never hold up a message.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from worker.core.health import Health, Verdict

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

TEXT: Final = [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")]


class QuietHandler(WSGIRequestHandler):
    """No access log line per probe or scrape on stderr."""

    def log_message(self, format: str, *args: object) -> None:
        return


class HttpServer:
    def __init__(self, app: WSGIApplication, host: str, port: int) -> None:
        self._server = make_server(
            host, port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="regworker-http", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def text(start_response: StartResponse, status: str, line: str) -> list[bytes]:
    body = f"{line}\n".encode()
    start_response(status, [*TEXT, ("Content-Length", str(len(body)))])
    return [body]


def serve(health: Health, registry: CollectorRegistry | None, host: str, port: int) -> HttpServer:
    """Start serving on ``host``:``port`` until ``close``; no ``registry``, no /metrics."""
    return HttpServer(worker_app(health, registry), host, port)


def worker_app(health: Health, registry: CollectorRegistry | None) -> WSGIApplication:
    metrics = make_wsgi_app(registry) if registry is not None else None
    probes: dict[str, Callable[[], Verdict]] = {"/healthz": health.live, "/readyz": health.ready}

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics" and metrics is not None:
            body: Iterable[bytes] = metrics(environ, start_response)
            return body
        probe = probes.get(path)
        if probe is None:
            return text(start_response, "404 Not Found", "not found: /metrics, /healthz, /readyz")
        verdict = probe()
        status = "200 OK" if verdict.ok else "503 Service Unavailable"
        return text(start_response, status, verdict.reason)

    return app
