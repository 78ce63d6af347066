"""Every fetch of an IMAGES_FROM list is bounded as a whole, against servers that answer one
byte at a time: these tests wait on real sockets for seconds each (moved out of the unit tier
from tests/unit/test_list_fetch.py, unchanged)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imagepuller.exitcodes import CONFIG as EXIT_CONFIG
from imagepuller.imagelists import ListUnavailable, read_source
from tests.trickleserver import TrickleServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # urllib honours *_proxy from the environment: the local server must be reached directly.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")


def failure(url: str, **kwargs: object) -> ListUnavailable:
    with pytest.raises(ListUnavailable) as caught:
        read_source(url, timeout=kwargs.pop("timeout", 5), **kwargs)  # type: ignore[arg-type]
    return caught.value


# --- every fetch bounded as a whole ---------------------------------------------------------

# A status line and headers sent one byte every 50 ms take about 30 s in all.
SLOW_HEADERS = b"HTTP/1.1 200 OK\r\n" + b"X-Padding: " + b"p" * 560 + b"\r\n\r\n"


@pytest.mark.timeout(30)
def test_a_server_trickling_its_status_line_and_headers_is_cut_off_at_the_timeout():
    with TrickleServer(SLOW_HEADERS, interval=0.05) as server:
        started = time.monotonic()
        error = failure(server.url(), timeout=1)
        elapsed = time.monotonic() - started
    assert "IMAGES_FROM_TIMEOUT" in error.reason
    assert elapsed < 10  # a bound, far above the 1 s asked, far below the 30 s of trickle


@pytest.mark.timeout(30)
def test_a_tls_server_trickling_its_handshake_is_cut_off_at_the_timeout():
    # The header of a 16 KiB TLS handshake record, then its bytes one at a time: the
    # handshake waits for the whole record.
    with TrickleServer(b"\x16\x03\x03\x40\x00" + b"\x00" * 600, interval=0.05) as server:
        started = time.monotonic()
        error = failure(server.url().replace("http://", "https://"), timeout=1)
        elapsed = time.monotonic() - started
    assert "IMAGES_FROM_TIMEOUT" in error.reason or "TLS" in error.reason
    assert elapsed < 10


@pytest.mark.timeout(30)
def test_a_redirect_chain_shares_one_deadline():
    # Each hop answers quickly but slowly enough that the hops together pass the timeout.
    answer = b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n"
    with TrickleServer(answer, interval=0.01) as server:  # about 0.6 s per hop
        started = time.monotonic()
        error = failure(server.url(), timeout=1.5)
        elapsed = time.monotonic() - started
    assert "IMAGES_FROM_TIMEOUT" in error.reason
    assert elapsed < 10
    assert server.connections <= 4


@pytest.mark.timeout(60)
def test_images_command_ends_in_about_its_timeout_against_a_trickling_server():
    with TrickleServer(SLOW_HEADERS, interval=0.05) as server:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "imagepuller", "images", server.url(), "--timeout", "2s"],
            capture_output=True,
            text=True,
            timeout=40,
            cwd=ROOT,
            env={**os.environ, "no_proxy": "127.0.0.1", "http_proxy": "", "HTTP_PROXY": ""},
        )
        elapsed = time.monotonic() - started
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "IMAGES_FROM_TIMEOUT" in done.stderr
    assert elapsed < 20  # a bound on a 2 s timeout; the trickle alone takes about 30 s
