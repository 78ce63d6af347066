"""The endpoints' bounds, over real sockets and real time: connections beyond the bound closed
at once, idle and trickling clients dropped after the idle time, a client that hangs up (moved
out of the unit tier from tests/unit/test_observability.py, unchanged)."""

from __future__ import annotations

import socket
import struct
import threading
import time

from imagepuller.endpoints import Endpoints
from imagepuller.metrics import PrometheusMetrics
from tests.httpget import get

# --- the endpoints' bounds -------------------------------------------------------------------


def _connect(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.settimeout(5)
    return client


def _closed_by_server(client: socket.socket) -> bool:
    """True when the server closes ``client`` within its 5 s timeout (False: still open)."""
    try:
        return client.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


class _Probes:
    def alive(self) -> tuple[bool, str]:
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        return True, "ok"


def test_connections_beyond_the_bound_are_closed_at_once_and_the_endpoints_recover():
    endpoints = Endpoints("127.0.0.1", 0, PrometheusMetrics(), _Probes()).start()
    idle = [_connect(endpoints.port) for _ in range(32)]  # each holds a handler, idle
    try:
        # Accepted in order, one at a time: the 33rd comes after 32 handlers are taken.
        extra = _connect(endpoints.port)
        with extra:
            assert _closed_by_server(extra)
    finally:
        for client in idle:
            client.close()
    # The slots come back: a probe is answered again (after the handlers see the hang-ups).
    assert _wait_until(lambda: _answers(endpoints.port), seconds=10)
    endpoints.stop()


def _answers(port: int) -> bool:
    try:
        return get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    except OSError:
        return False


def _wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_an_idle_connection_is_dropped_after_the_idle_time():
    endpoints = Endpoints("127.0.0.1", 0, PrometheusMetrics(), _Probes(), idle_seconds=0.3)
    endpoints.start()
    try:
        with _connect(endpoints.port) as client:
            assert _closed_by_server(client)
    finally:
        endpoints.stop()


def test_a_request_trickled_past_the_idle_time_as_a_whole_is_dropped():
    """A byte now and then is not idle, but the request as a whole is bounded too."""
    endpoints = Endpoints("127.0.0.1", 0, PrometheusMetrics(), _Probes(), idle_seconds=0.5)
    endpoints.start()
    try:
        with _connect(endpoints.port) as client:
            started = time.monotonic()
            closed = False
            for byte in b"GET /healthz HTTP/1.0\r\nX-Slow: " + b"x" * 200:
                try:
                    client.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                time.sleep(0.1)
                if time.monotonic() - started > 4:
                    break
            assert closed or _closed_by_server(client)
            assert time.monotonic() - started < 4
    finally:
        endpoints.stop()


class _SlowMetrics(PrometheusMetrics):
    """/metrics answers only once ``release`` is set, and with a large body."""

    def __init__(self) -> None:
        super().__init__()
        self.asked, self.release = threading.Event(), threading.Event()

    def exposition(self) -> tuple[bytes, str]:
        self.asked.set()
        self.release.wait(10)
        return b"x" * 4_000_000, "text/plain"


def _handler_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "process_request" in t.name}


def test_a_client_that_hangs_up_leaves_no_traceback(capfd):
    metrics = _SlowMetrics()
    endpoints = Endpoints("127.0.0.1", 0, metrics, _Probes()).start()
    before = _handler_threads()
    try:
        client = _connect(endpoints.port)
        client.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        assert metrics.asked.wait(10)
        # Hang up with a reset (no lingering), before the answer is written.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        handlers = _handler_threads() - before
        metrics.release.set()
        for handler in handlers:
            handler.join(10)
        assert _answers(endpoints.port)
    finally:
        metrics.release.set()
        endpoints.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err and "ConnectionReset" not in err
