"""The HTTP endpoints on METRICS_PORT: /metrics for Prometheus, /healthz and /readyz for the
kubelet's probes. A small threaded server of the standard library: three paths need no web
framework, and a scrape or a probe never waits for the controller's loop.

Bounded, whoever connects: at most ``MAX_CONNECTIONS`` are handled at once (one thread each),
and a connection beyond that is closed at once; a request must arrive whole within
``IDLE_SECONDS`` and its answer be taken within as long again. So idle, half-open or trickling
clients hold a few threads for seconds, never memory without end (3000 idle connections once
cost 80 MiB), and a scrape or probe gets a slot again soon after."""

from __future__ import annotations

import http.server
import io
import socket
import sys
import threading
import time
from typing import Any, Protocol

import structlog

from imagepuller.metrics import Metrics

log = structlog.get_logger("imagepuller.endpoints")

# A scrape and a probe or two at a time is the normal load: 32 leaves room for several
# Prometheus replicas and kubectl users while bounding the threads (and their memory).
MAX_CONNECTIONS = 32
# The kubelet's probe and Prometheus send their request at once: 10 s is generous for them,
# and short enough that clients holding connections open free their slot soon.
IDLE_SECONDS = 10.0
# Connections waiting in the kernel to be accepted: they cost us nothing until accepted.
LISTEN_BACKLOG = 128


class Probes(Protocol):
    """What /healthz and /readyz ask: a ``Health``, or the operator's view of all of them."""

    def alive(self) -> tuple[bool, str]: ...

    def ready(self) -> tuple[bool, str]: ...


class _BoundedServer(http.server.ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` of them at once."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], handler: Any, max_connections: int):
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Taken here, in the accepting thread: a connection over the bound is closed before
        # any thread is started for it.
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()  # no thread started to give the slot back
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up (a probe timing out, a closed scrape) is no error of ours: one
        # line at debug, not socketserver's traceback on standard error.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            log.debug("endpoint_client_gone", error=type(error).__name__)
        else:
            log.warning("endpoint_failed", exc_info=True)


class _Server6(_BoundedServer):
    address_family = socket.AF_INET6


class _ReadUntil(io.RawIOBase):
    """A connection's reading side that fails with TimeoutError at ``deadline`` (monotonic):
    a socket timeout alone bounds each wait, and a byte every few seconds would renew it."""

    def __init__(self, connection: socket.socket, deadline: float):
        self._connection = connection
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._connection.settimeout(left)
        return self._connection.recv_into(buffer)


class Endpoints:
    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        health: Probes,
        *,
        max_connections: int = MAX_CONNECTIONS,
        idle_seconds: float = IDLE_SECONDS,
    ):
        self.metrics = metrics
        self.health = health
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = idle_seconds  # each wait on the socket (the answer's writing too)

            def setup(self) -> None:
                super().setup()
                self.rfile.close()  # the plain file setup made: replaced by a bounded one
                # One request per connection (HTTP/1.0), read whole within idle_seconds.
                reader = _ReadUntil(self.connection, time.monotonic() + idle_seconds)
                self.rfile = io.BufferedReader(reader)

            def do_GET(self) -> None:  # noqa: N802 - the http.server interface
                self.connection.settimeout(idle_seconds)  # the answer's own bound
                owner._answer(self)

            def log_message(self, *args: Any) -> None:
                pass  # a probe every few seconds is not worth a log line

        server_class = _Server6 if ":" in host else _BoundedServer
        self.server = server_class((host, port), Handler, max_connections)
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
            # The probes' answers as series too, so that an alert sees a failing /healthz
            # before (and between) the kubelet's restarts.
            self.metrics.probed(alive=self.health.alive()[0], ready=self.health.ready()[0])
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
