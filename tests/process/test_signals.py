"""SIGTERM is honoured in time even when the API server accepts requests but never answers."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import threading
import time

from tests.controller_process import ControllerProcess

GRACE_PERIOD = 30.0  # Kubernetes' default terminationGracePeriodSeconds


class SilentTLSServer(threading.Thread):
    """Completes the TLS handshake, reads the request, and never answers it."""

    def __init__(self, certfile, keyfile):
        super().__init__(daemon=True)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile, keyfile)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.request_seen = threading.Event()
        self.connections: list[socket.socket] = []

    def run(self):
        try:
            while True:
                raw, _ = self.listener.accept()
                conn = self.context.wrap_socket(raw, server_side=True)
                self.connections.append(conn)
                conn.recv(65536)  # the request; deliberately left unanswered
                self.request_seen.set()
        except OSError:
            return  # closed at the end of the test

    def close(self):
        self.listener.close()
        for conn in self.connections:
            conn.close()


def test_sigterm_while_blocked_on_a_silent_api_server_exits_0_within_the_grace_period(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    server = SilentTLSServer(cert, key)
    server.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [
                    {
                        "name": "k",
                        "cluster": {
                            "server": f"https://127.0.0.1:{server.port}",
                            "insecure-skip-tls-verify": True,
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
            }
        )
    )
    controller = ControllerProcess({"KUBECONFIG": str(kubeconfig), "IMAGES": "a=quay.io/a:1"})
    try:
        # The controller's first request is in flight and will get no answer (its read
        # timeout is 30 s): exactly the call a stop cannot interrupt.
        assert server.request_seen.wait(30), "the controller never sent a request"
        began = time.monotonic()
        code = controller.stop(signal.SIGTERM, timeout=GRACE_PERIOD + 15)
        elapsed = time.monotonic() - began
    finally:
        controller.kill()
        server.close()
    print(f"exited {elapsed:.1f}s after SIGTERM")
    assert code == 0
    assert elapsed < GRACE_PERIOD
    # Either the worker was idle (the unanswered request is a watch's list, in its own
    # thread) or it was stuck in a call and the main thread shut down for it.
    assert any('"stopped"' in line for line in controller.lines)
