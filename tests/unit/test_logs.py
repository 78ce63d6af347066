"""Logging: one JSON object per line, whoever writes the line (our events or a library's)."""

from __future__ import annotations

import io
import json
import logging
import socket

import pytest
import structlog

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
