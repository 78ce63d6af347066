"""IMAGES_FROM against a list server that trickles its answer (issue 17, item 6), on the real
control plane: the controller keeps the DaemonSet while the list is read within its timeout,
never waits for the list to recreate it, and stays alive; `imagepuller run` as a process."""

from __future__ import annotations

import urllib.error
import urllib.request

from tests.cluster.conftest import NAME, make_refresh_due, read_ds
from tests.ports import free_port
from tests.trickleserver import TrickleServer
from tests.waiting import wait_until

# A status line and headers sent one byte every 50 ms: about 5 minutes in all.
SLOW_HEADERS = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"p" * 6000 + b"\r\n\r\n"


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_a_list_trickling_its_headers_holds_the_daemonset_up_one_timeout_only(
    start_controller, apps, namespace
):
    port = free_port()
    with TrickleServer(SLOW_HEADERS, interval=0.05) as server:
        controller = start_controller(
            IMAGES="tools=quay.io/me/tools:1;",
            IMAGES_FROM=server.url(),
            IMAGES_FROM_TIMEOUT="2s",
            METRICS_PORT=str(port),
            METRICS_HOST="127.0.0.1",
        )
        # Generous bounds for a 2 s timeout; the trickle alone would take 5 minutes.
        failed = controller.wait_for("image_list_failed", 60)
        assert "IMAGES_FROM_TIMEOUT" in failed["reason"]
        controller.wait_for("daemonset_ready", 90, where=lambda e: e["desired"] == 3)
        containers = read_ds(apps, namespace).spec.template.spec.containers
        assert [c.name for c in containers] == ["tools"]
        assert healthz(port) == 200

        # Before each refresh the list is read again, bounded again: the refresh goes on.
        make_refresh_due(apps, namespace)
        controller.wait_for("refresh_started", 60)
        controller.wait_for("daemonset_ready", 90, where=lambda e: e["desired"] == 3)
        wait_until(lambda: healthz(port) == 200, 10, "/healthz answering 200")


CODE = b"quay.io/che-incubator/che-code:latest\n"
# A whole answer: at once while the server is quick, over two minutes once it trickles.
LIST_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    + b"X-Padding: " + b"p" * 100 + b"\r\n"
    + b"Content-Length: " + str(len(CODE)).encode() + b"\r\n\r\n" + CODE
)  # fmt: skip


def test_a_daemonset_deleted_while_a_list_trickles_is_recreated_at_once(
    start_controller, apps, namespace
):
    port = free_port()
    with TrickleServer(LIST_ANSWER) as server:
        controller = start_controller(
            IMAGES="tools=quay.io/me/tools:1;",
            IMAGES_FROM=server.url(),
            IMAGES_FROM_TIMEOUT="120s",
            METRICS_PORT=str(port),
            METRICS_HOST="127.0.0.1",
        )
        controller.wait_for("daemonset_ready", 90, where=lambda e: e["desired"] == 3)
        first = read_ds(apps, namespace)
        assert [c.name for c in first.spec.template.spec.containers] == ["tools", "che-code"]

        # From now on a reading lasts the whole timeout: the refresh waits for it, nothing else.
        server.interval = 1.0
        make_refresh_due(apps, namespace)
        wait_until(lambda: server.connections >= 2, 30, "the list read again for the refresh")
        apps.delete_namespaced_daemon_set(NAME, namespace)
        controller.wait_for("daemonset_deleted_externally", 30)
        created = controller.wait_for("daemonset_created", 30)  # far within the 120 s
        assert created["uid"] != first.metadata.uid
        recreated = read_ds(apps, namespace)
        assert [c.name for c in recreated.spec.template.spec.containers] == ["tools", "che-code"]
        assert healthz(port) == 200
