"""What an administrator sees, on the real control plane: `imagepuller status`, /metrics
against what the API says, /healthz when the worker is wedged, and Events with repeats counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

import yaml

from tests.cluster.conftest import NAME, make_refresh_due, read_ds
from tests.httpget import get
from tests.ports import free_port
from tests.stallproxy import StallProxy
from tests.waiting import wait_until

GOOD = "java=quay.io/eclipse/che-java17-maven:next;"
# Pulls everywhere except on node obs-1 (the local cluster's kwok stages fail it there).
ONE_NODE_FAILS = "tool=registry.invalid-on-obs-1/team/tool:1;"
GPU_TAINT = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


def status(cluster, namespace, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imagepuller", "status", "-n", namespace, *args],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def sample(metrics: str, name: str, namespace: str) -> float | None:
    """One per-puller sample of /metrics' text."""
    prefix = f'{name}{{daemonset="{NAME}",namespace="{namespace}"}} '
    for line in metrics.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


def node_pod_failed(core, namespace, node: str) -> bool:
    pods = core.list_namespaced_pod(namespace, field_selector=f"spec.nodeName={node}").items
    return any(
        c.state.waiting is not None and c.state.waiting.reason == "ErrImagePull"
        for pod in pods
        for c in pod.status.container_statuses or []
    )


def test_status_shows_which_node_holds_which_image_and_why_not(
    cluster, start_controller, apps, core, namespace, add_node
):
    add_node("obs-1")
    add_node("obs-gpu", taints=[GPU_TAINT])  # 5 nodes; the DaemonSet does not tolerate it
    controller = start_controller(IMAGES=GOOD + ONE_NODE_FAILS)
    controller.wait_for("daemonset_created", 60)
    wait_until(
        lambda: (
            (read_ds(apps, namespace).status.number_ready or 0) == 3
            and node_pod_failed(core, namespace, "obs-1")
        ),
        90,
        "3 of 4 nodes ready and the pull failed on obs-1, as the API reports",
    )

    as_json = status(cluster, namespace, "-o", "json")
    assert as_json.returncode == 1, as_json.stderr
    (puller,) = json.loads(as_json.stdout)["pullers"]
    assert (puller["desired"], puller["holding"]) == (4, 3)
    (failure,) = puller["failures"]
    assert (failure["node"], failure["image"], failure["reason"]) == (
        "obs-1",
        "registry.invalid-on-obs-1/team/tool:1",
        "ErrImagePull",
    )
    by_node = {n["node"]: n for n in puller["nodes"]}
    assert by_node["obs-gpu"]["state"] == "not-scheduled"
    assert "dedicated=gpu:NoSchedule" in by_node["obs-gpu"]["why"]
    assert by_node["obs-1"]["state"] == "failed"
    assert by_node["obs-1"]["images"]["java"]["state"] == "held"
    assert {n for n, s in by_node.items() if s["state"] == "held"} == {
        "node-0",
        "node-1",
        "node-2",
    }

    table = status(cluster, namespace)
    assert table.returncode == 1
    lines = table.stdout.splitlines()
    assert "3 of 4 selected nodes hold all 2 images" in lines[0], table.stdout
    failing = next(i for i, line in enumerate(lines) if line.startswith("obs-1"))
    held = next(i for i, line in enumerate(lines) if "node-0" in line)
    assert "ErrImagePull" in lines[failing] and failing < held
    assert "node-1" in lines[held] and "node-2" in lines[held]  # grouped into one row
    assert any("obs-gpu" in line and "dedicated=gpu" in line for line in lines)
    as_yaml = status(cluster, namespace, "-o", "yaml")
    assert yaml.safe_load(as_yaml.stdout)["pullers"][0]["holding"] == 3

    # All well: the unpullable image removed, every selected node holds every image.
    assert controller.stop() == 0
    controller = start_controller(IMAGES=GOOD)
    controller.wait_for("daemonset_ready", 90, where=lambda e: e["desired"] == 4)
    well = status(cluster, namespace, "-o", "json")
    assert well.returncode == 0, well.stdout + well.stderr
    assert json.loads(well.stdout)["pullers"][0]["holding"] == 4


def test_metrics_after_a_refresh_equal_what_the_api_says_and_events_count_repeats(
    cluster, start_controller, apps, namespace, owner_deployment
):
    port = free_port()
    controller = start_controller(METRICS_HOST="127.0.0.1", METRICS_PORT=str(port))
    controller.wait_for("daemonset_ready", 90)
    make_refresh_due(apps, namespace)
    complete = controller.wait_for("refresh_complete", 90)

    code, metrics = get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200
    ds = read_ds(apps, namespace)
    assert sample(metrics, "imagepuller_nodes_desired", namespace) == (
        ds.status.desired_number_scheduled
    )
    assert sample(metrics, "imagepuller_nodes_holding", namespace) == ds.status.number_available
    assert sample(metrics, "imagepuller_images", namespace) == len(ds.spec.template.spec.containers)
    assert sample(metrics, "imagepuller_refreshes_started_total", namespace) == 1
    assert sample(metrics, "imagepuller_refreshes_completed_total", namespace) == 1
    last = sample(metrics, "imagepuller_last_refresh_timestamp_seconds", namespace)
    logged = datetime.fromisoformat(complete["timestamp"].replace("Z", "+00:00")).timestamp()
    assert last is not None and abs(last - logged) < 1.0
    assert 'imagepuller_api_requests_total{code="200",resource="daemonsets.apps",verb="patch"}' in (
        metrics
    )
    assert "process_resident_memory_bytes" in metrics
    assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200
    assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200

    # Deleted from outside, twice: one Warning with a count of 2, not two Events.
    for _ in range(2):
        uid = read_ds(apps, namespace).metadata.uid
        apps.delete_namespaced_daemon_set(NAME, namespace)
        controller.wait_for(
            "daemonset_deleted_externally", 60, where=lambda e, uid=uid: e["uid"] == uid
        )
        controller.wait_for("daemonset_ready", 90)

    def kubectl(*args: str) -> str:
        return subprocess.run(
            ["kubectl", "-n", namespace, *args],
            env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    def events() -> dict:
        # Read as JSON: the client's model refuses other components' Events without eventTime.
        items = json.loads(kubectl("get", "events.events.k8s.io", "-o", "json"))["items"]
        return {
            (e["type"], e["reason"]): e
            for e in items
            if e.get("regarding", {}).get("kind") == "Deployment"
        }

    recorded = wait_until(
        lambda: (
            ((got := events()).get(("Warning", "DaemonSetDeleted")) or {}).get("series") and got
        ),
        30,
        "the DaemonSetDeleted Event counted twice",
    )
    deleted = recorded[("Warning", "DaemonSetDeleted")]
    assert deleted["series"]["count"] == 2
    assert deleted["reportingController"] == "imagepuller.io/controller"
    assert deleted["regarding"]["name"] == NAME
    assert deleted["regarding"]["uid"] == owner_deployment.metadata.uid
    assert {("Normal", "Created"), ("Normal", "Refreshing"), ("Normal", "Ready")} <= set(recorded)
    ready = recorded[("Normal", "Ready")]
    assert ready["note"] == "All 2 images held on 3/3 nodes"
    assert ready["series"]["count"] >= 3  # created, refreshed, recreated twice
    # `kubectl get events` shows the two deletions on one line.
    shown = kubectl("get", "events")
    assert shown.count("DaemonSetDeleted") == 1, shown
    assert "Refreshing" in shown and "Ready" in shown


def test_healthz_fails_while_a_call_is_blocked_and_recovers(
    cluster, start_controller, apps, namespace, tmp_path
):
    server = urllib.parse.urlsplit(cluster.server)
    proxy = StallProxy((server.hostname, server.port)).start()
    try:
        config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
        for entry in config["clusters"]:
            entry["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
        kubeconfig = tmp_path / "through-proxy"
        kubeconfig.write_text(yaml.safe_dump(config))
        port = free_port()
        controller = start_controller(
            KUBECONFIG=str(kubeconfig),
            METRICS_HOST="127.0.0.1",
            METRICS_PORT=str(port),
            HEALTHZ_STUCK_AFTER="2s",
            CACHING_INTERVAL_HOURS="0.001",
            READY_TIMEOUT="5s",
        )
        controller.wait_for("daemonset_ready", 90)
        healthz = f"http://127.0.0.1:{port}/healthz"
        assert get(healthz)[0] == 200
        proxy.stall()
        # Nothing reaches the controller through its watches now; its next look comes from
        # the refresh schedule (every 3.6 s here), and the look's first call blocks.
        code, text = wait_until(
            lambda: (answer := get(healthz))[0] == 503 and answer,
            60,
            "/healthz to fail while the API call is blocked",
        )
        assert "stuck" in text
        # What the kubelet would do with it: the Deployment's liveness probe asks this path on
        # this port, and restarts the container after failureThreshold failures in a row.
        deployment = yaml.safe_load(
            (Path(__file__).parents[2] / "manifests" / "kubernetes" / "deployment.yaml").read_text()
        )
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        probe = container["livenessProbe"]
        assert probe["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["ports"][0]["name"] == "metrics"
        for _ in range(probe["failureThreshold"]):  # consecutive probes, all failing
            assert get(healthz)[0] == 503
        proxy.flow()
        wait_until(lambda: get(healthz)[0] == 200, 60, "/healthz to pass again")
    finally:
        proxy.stop()
