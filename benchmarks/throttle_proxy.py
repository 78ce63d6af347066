"""A plain-HTTP reverse proxy that limits the bytes per second of the response bodies it relays.

It stands for a remote registry in front of the local one (bench_realnode.py): a loopback
registry answers a 500 MB image in a second or two, faster than any real registry, so the
value of holding an image would not show. Every response body (manifests and blobs alike) goes
through ONE token bucket shared by all connections, as a node's link to a registry is shared by
the layers containerd fetches side by side. Nothing else is changed: status, headers (except
hop-by-hop ones) and bodies pass as they are; no latency is added.

    python benchmarks/throttle_proxy.py --upstream 127.0.0.1:5000 --rate-mbps 25

prints ``listening 127.0.0.1:PORT`` on its first line of standard output once it accepts
connections, and runs until SIGTERM or SIGINT. ``--rate-mbps`` is in MB/s (10**6 bytes).
"""

from __future__ import annotations

import argparse
import http.client
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHUNK = 64 * 1024
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}


class Throttle:
    """One shared pacing clock: ``take(n)`` returns when ``n`` more bytes fit in the rate."""

    def __init__(self, bytes_per_second: float):
        self.rate = float(bytes_per_second)
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def take(self, n: int) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + n / self.rate
        if start > now:
            time.sleep(start - now)


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, listen: tuple[str, int], upstream: str, rate: float):
        super().__init__(listen, ProxyHandler)
        self.upstream = upstream
        self.throttle = Throttle(rate)
        self.relayed = 0  # body bytes sent to clients
        self._count_lock = threading.Lock()

    def count(self, n: int) -> None:
        with self._count_lock:
            self.relayed += n


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as containerd expects of a registry
    server: ProxyServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: the registry logs every request itself

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection(self.server.upstream, timeout=120)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            self.send_response_only(response.status, response.reason)
            out_headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            declared = response.getheader("Content-Length")
            if self.command == "HEAD" or response.status in (204, 304):
                for k, v in out_headers:
                    self.send_header(k, v)
                self.end_headers()
                return
            if declared is None:
                # Chunked from upstream (rare for a registry): relay with a known length.
                data = response.read()
                out_headers.append(("Content-Length", str(len(data))))
                chunks: Any = (data[i : i + CHUNK] for i in range(0, len(data), CHUNK))
            else:
                chunks = iter(lambda: response.read(CHUNK), b"")
            for k, v in out_headers:
                self.send_header(k, v)
            self.end_headers()
            for chunk in chunks:
                self.server.throttle.take(len(chunk))
                self.wfile.write(chunk)
                self.server.count(len(chunk))
        finally:
            upstream.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _relay  # noqa: N815


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="host:port of the plain-HTTP server")
    parser.add_argument("--rate-mbps", type=float, required=True, help="MB/s (10**6 bytes)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: any free)")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    server = ProxyServer((host, int(port)), args.upstream, args.rate_mbps * 1e6)

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    bound_host, bound_port = server.server_address[:2]
    print(f"listening {bound_host!s}:{bound_port}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    print(f"relayed {server.relayed} body bytes", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
