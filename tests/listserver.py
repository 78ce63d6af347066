"""A local HTTP(S) server of image lists on 127.0.0.1, for tests: no test reaches the internet.

``ListServer.files`` maps a path to the bytes served (editable while it runs); a path not in it
answers 404. ``redirects`` maps a path to (status, Location) and ``errors`` a path to (status,
reason phrase, body): answers a hostile or broken server could give. ``with_tls(tmp_path)``
serves HTTPS with a certificate signed by a throw-away CA made with openssl; ``ca_pem`` is that
CA, for IMAGES_FROM_CA_BUNDLE.
"""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
from pathlib import Path


def make_ca_and_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a CA and a server certificate for 127.0.0.1."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=imagepuller test CA", "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return ca, cert, key


class ServedInBackground:
    """A test server's life: its ThreadingHTTPServer served in a thread of its own until
    ``stop`` (or the end of a ``with`` block)."""

    _server: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def _serve(self, server: http.server.ThreadingHTTPServer) -> None:
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ListServer(ServedInBackground):
    def __init__(self, files: dict[str, bytes] | None = None):
        self.files: dict[str, bytes] = dict(files or {})
        self.redirects: dict[str, tuple[int, str]] = {}
        self.errors: dict[str, tuple[int, str, bytes]] = {}
        self.requests: list[str] = []
        self.ca_pem: str | None = None
        self._context: ssl.SSLContext | None = None

    def with_tls(self, directory: Path) -> ListServer:
        ca, cert, key = make_ca_and_certificate(directory)
        self.ca_pem = ca.read_text()
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        return self

    @property
    def scheme(self) -> str:
        return "https" if self._context else "http"

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def start(self) -> ListServer:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server interface
                owner.requests.append(self.path)
                if self.path in owner.redirects:
                    status, location = owner.redirects[self.path]
                    self.send_response(status)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path in owner.errors:
                    status, phrase, error_body = owner.errors[self.path]
                    self.send_response(status, phrase)
                    self.send_header("Content-Length", str(len(error_body)))
                    self.end_headers()
                    self.wfile.write(error_body)
                    return
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self._context is not None:
            server.socket = self._context.wrap_socket(server.socket, server_side=True)
        self._serve(server)
        return self

    def __enter__(self) -> ListServer:
        return self.start()
