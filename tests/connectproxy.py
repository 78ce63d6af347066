"""An HTTP proxy on 127.0.0.1 for tests: CONNECT tunnels (https) and absolute-URL GETs (http),
so that reading a list through `https_proxy` / `http_proxy` is tried without the internet.
``requests`` records each request line it was asked."""

from __future__ import annotations

import contextlib
import http.server
import select
import socket
import urllib.request

from tests.listserver import ServedInBackground


class ConnectProxy(ServedInBackground):
    def __init__(self) -> None:
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ConnectProxy:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_CONNECT(self) -> None:  # noqa: N802 - the http.server interface
                owner.requests.append(self.requestline)
                host, _, port = self.path.rpartition(":")
                with socket.create_connection((host, int(port)), timeout=10) as upstream:
                    self.send_response(200, "Connection established")
                    self.end_headers()
                    self._pipe(self.connection, upstream)

            def do_GET(self) -> None:  # noqa: N802
                owner.requests.append(self.requestline)
                direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with contextlib.suppress(OSError), direct.open(self.path, timeout=10) as answer:
                    body = answer.read()
                    self.send_response(answer.status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def _pipe(self, a: socket.socket, b: socket.socket) -> None:
                peers = {a: b, b: a}
                with contextlib.suppress(OSError):
                    while True:
                        readable, _, _ = select.select(list(peers), [], [], 5)
                        if not readable:
                            return
                        for sock in readable:
                            data = sock.recv(65536)
                            if not data:
                                return
                            peers[sock].sendall(data)

            def log_message(self, *args: object) -> None:
                pass

        self._serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        return self

    def __enter__(self) -> ConnectProxy:
        return self.start()
