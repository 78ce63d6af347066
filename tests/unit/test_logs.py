"""Logging: one JSON object per line, whoever writes the line (our events or a library's)."""

from __future__ import annotations

import http.server
import io
import json
import logging
import socket
import threading

import pytest
import structlog
import urllib3

from imagepuller.logs import configure_logging
from tests.controller_process import ControllerProcess


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_library_records_are_rendered_as_json_lines(restore_root_logger):
    out = io.StringIO()
    configure_logging("json", "info", out)
    configure_logging("json", "info", out)  # configuring twice must not double every line
    logging.getLogger("kubernetes.config").error("exec: process returned %d", 1)
    logging.getLogger("urllib3").debug("chatter that is not shown")
    structlog.get_logger("imagepuller").info("ours", n=1)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["event"], e["level"]) for e in lines] == [
        ("exec: process returned 1", "error"),
        ("ours", "info"),
    ]
    assert lines[0]["logger"] == "kubernetes.config"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failing_kubeconfig_exec_plugin_is_reported_in_the_json_log(tmp_path):
    plugin = tmp_path / "plugin.sh"
    plugin.write_text("#!/bin/sh\necho 'credentials expired, run sso login' >&2\nexit 1\n")
    plugin.chmod(0o755)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{_closed_port()}"}}
                ],
                "users": [
                    {
                        "name": "u",
                        "user": {
                            "exec": {
                                "apiVersion": "client.authentication.k8s.io/v1",
                                "command": str(plugin),
                                "interactiveMode": "Never",
                            }
                        },
                    }
                ],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    controller = ControllerProcess({"KUBECONFIG": str(kubeconfig), "IMAGES": "a=busybox"})
    try:
        failed = controller.wait_for(
            "exec: process returned 1. credentials expired, run sso login", 30
        )
        assert failed["level"] == "error"
        controller.wait_for("api_retry", 30)  # it carries on, with its own events
    finally:
        controller.kill()
    assert controller.lines
    for line in controller.lines:
        json.loads(line)  # every line, the library's included, is one JSON object


def _pool_overflow() -> None:
    """Two requests at once through a pool of one connection, as the Kubernetes client's
    threads do with its pool: urllib3 discards the second connection when it comes back."""
    both = threading.Barrier(2, timeout=10)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            both.wait()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pool = urllib3.HTTPConnectionPool("127.0.0.1", server.server_address[1], maxsize=1)
    try:
        requests = [threading.Thread(target=pool.request, args=("GET", "/")) for _ in range(2)]
        for request in requests:
            request.start()
        for request in requests:
            request.join(10)
    finally:
        pool.close()
        server.shutdown()
        server.server_close()


def test_a_full_connection_pool_is_not_logged_and_urllib3_warnings_still_are(
    restore_root_logger,
):
    out = io.StringIO()
    configure_logging("json", "info", out)
    _pool_overflow()
    logging.getLogger("urllib3.connectionpool").warning("Retrying after %s", "a reset")
    events = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert events == ["Retrying after a reset"]
