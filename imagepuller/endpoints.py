"""The HTTP endpoints on METRICS_PORT: /metrics for Prometheus, /healthz and /readyz for the
kubelet's probes. A small threaded server of the standard library: three paths need no web
framework, and a scrape or a probe never waits for the controller's loop."""

from __future__ import annotations

import http.server
import socket
import threading
from typing import Any, Protocol

from imagepuller.metrics import Metrics


class Probes(Protocol):
    """What /healthz and /readyz ask: a ``Health``, or the operator's view of all of them."""

    def alive(self) -> tuple[bool, str]: ...

    def ready(self) -> tuple[bool, str]: ...


class _Server6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


class Endpoints:
    def __init__(self, host: str, port: int, metrics: Metrics, health: Probes):
        self.metrics = metrics
        self.health = health
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server interface
                owner._answer(self)

            def log_message(self, *args: Any) -> None:
                pass  # a probe every few seconds is not worth a log line

        server_class = _Server6 if ":" in host else http.server.ThreadingHTTPServer
        self.server = server_class((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="endpoints", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> Endpoints:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, request: http.server.BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        if path == "/metrics":
            body, content_type = self.metrics.exposition()
            self._send(request, 200, body, content_type)
        elif path in ("/healthz", "/livez"):
            ok, why = self.health.alive()
            self._send(request, 200 if ok else 503, f"{why}\n".encode())
        elif path == "/readyz":
            ok, why = self.health.ready()
            self._send(request, 200 if ok else 503, f"{why}\n".encode())
        else:
            self._send(request, 404, b"not found: /metrics, /healthz or /readyz\n")

    @staticmethod
    def _send(
        request: http.server.BaseHTTPRequestHandler,
        code: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        request.send_response(code)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
