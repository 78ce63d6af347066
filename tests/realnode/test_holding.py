"""On real kubelets: the images are really in the runtime, held so that pruning keeps them, the
holders really run restricted, and a refresh really pulls a moved tag again.

The puller runs as `imagepuller run` on this machine (its image and its own pod are the
subject of test_install_for_real.py); what is checked here is read from the container runtime
(``crictl``, ``/proc/<pid>``), not from the pod specs.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client

from tests.cluster.conftest import NAME, make_refresh_due
from tests.holding import HoldingWatcher, holding_nodes
from tests.ports import free_port
from tests.realnode.conftest import REAL_NODES, crictl_images, imagepuller_status
from tests.waiting import wait_until

SELECTOR = f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=image-cache"


@pytest.fixture
def puller(cluster, namespace, controllers, kip_image):
    def start(images: dict[str, str], **env: str):
        controller = controllers(
            {
                "KUBECONFIG": str(cluster.kubeconfig),
                "NAMESPACE": namespace,
                "IMAGES": "".join(f"{name}={ref};" for name, ref in images.items()),
                "KIP_IMAGE": kip_image,
                "READY_TIMEOUT": "120s",
                **env,
            }
        )
        controller.wait_for("daemonset_ready", 180, where=lambda e: e["ready"] == len(REAL_NODES))
        return controller

    return start


def holder_containers(cluster, node: str, namespace: str) -> list[dict]:
    """The running containers of the puller's pod on ``node``, as ``crictl inspect`` shows."""
    real = cluster.real_node(node)
    listed = json.loads(
        real.crictl("ps", "--label", f"io.kubernetes.pod.namespace={namespace}", "-o", "json")
    )
    return [json.loads(real.crictl("inspect", c["id"])) for c in listed["containers"]]


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def root_mount_options(pid: int) -> list[str]:
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            return fields[5].split(",")
    raise AssertionError(f"no root mount in /proc/{pid}/mountinfo")


def test_held_images_are_in_every_runtime_and_a_prune_removes_only_what_is_not_held(
    cluster, namespace, puller, scratch_image
):
    held = {"editor": scratch_image("editor"), "tools": scratch_image("tools")}
    unheld = scratch_image("unheld")
    puller(held)
    for node in REAL_NODES:
        cluster.real_node(node).crictl("pull", unheld)
        present = crictl_images(cluster, node)
        assert set(held.values()) | {unheld} <= set(present), (node, sorted(present))

    for node in REAL_NODES:
        # What the kubelet's image garbage collection does: remove what no container uses.
        cluster.real_node(node).crictl("rmi", "--prune")
        present = crictl_images(cluster, node)
        assert set(held.values()) <= set(present), (node, sorted(present))
        assert unheld not in present, (node, sorted(present))


def test_the_holders_run_restricted_as_the_runtime_reports(
    cluster, namespace, puller, scratch_image
):
    image = scratch_image("no-shell-no-libc")
    puller({"bare": image})
    for node in REAL_NODES:
        containers = holder_containers(cluster, node, namespace)
        assert [c["status"]["metadata"]["name"] for c in containers] == ["bare"], node
        (holder,) = containers
        assert holder["status"]["image"]["image"] == image
        pid = holder["info"]["pid"]
        # Held by the static sleep copied from KIP_IMAGE: the image has nothing to run.
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[:2] == [b"/kip/sleep", b"720h"], cmdline
        status = proc_status(pid)
        assert status["Uid"].split() == ["65532"] * 4, status["Uid"]
        assert status["Gid"].split() == ["65532"] * 4, status["Gid"]
        assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
        assert status["NoNewPrivs"] == "1"
        assert status["Seccomp"] == "2"  # a filter: RuntimeDefault
        assert "ro" in root_mount_options(pid)


def test_a_refresh_pulls_a_moved_tag_on_every_node_and_leaves_no_node_without_a_holder(
    cluster, api_client, namespace, puller, scratch_image, stack
):
    moving = scratch_image("moving", tag="latest")
    pinned_tag = scratch_image("pinned")
    pinned = pinned_tag.rsplit(":", 1)[0] + "@" + _digest(stack, pinned_tag)
    controller = puller({"moving": moving, "pinned": pinned})
    old = {node: crictl_images(cluster, node)[moving] for node in REAL_NODES}
    assert len(set(old.values())) == 1

    moved = scratch_image("moving", tag="latest")  # new content under the same tag
    new_digest = _digest(stack, moved)
    assert new_digest not in old.values()
    apps = client.AppsV1Api(api_client)
    mark = cluster.registry.mark()
    watcher = HoldingWatcher(api_client, namespace, SELECTOR).start_and_wait()
    try:
        make_refresh_due(apps, namespace)
        started = controller.wait_for("refresh_started", 30)
        controller.wait_for(
            "refresh_complete", 180, where=lambda e: e["_received"] > started["_received"]
        )
    finally:
        samples = watcher.stop()
    nodes = set(REAL_NODES)
    assert min(watcher.fractions(nodes)) == 1.0, [
        sorted(nodes - held) for _, held in samples if held != nodes
    ]
    for node in REAL_NODES:
        assert crictl_images(cluster, node)[moved] == new_digest, node
    asked = [r["uri"] for r in cluster.registry.requests(since=mark)]
    assert any("/test/moving/manifests/latest" in uri for uri in asked), asked
    # IfNotPresent for a digest: the refresh asked the registry nothing about it.
    assert not [uri for uri in asked if "/test/pinned/" in uri], asked


def status(cluster, namespace) -> dict:
    """`imagepuller status -o json` of the test's puller ({"stderr": ...} until it exists)."""
    return imagepuller_status(cluster, namespace)[1]


def failures(report: dict, container: str) -> dict[str, dict]:
    """Per node, the failure `status` reports for ``container`` (reason, message)."""
    found = {}
    for puller in report.get("pullers", []):
        for failure in puller.get("failures", []):
            if failure["container"] == container:
                found[failure["node"]] = failure
    return found


def metric(port: int, name: str) -> dict[str, float]:
    """Samples of ``name`` on the puller's /metrics: {labels text: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        line[len(name) :].rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{")
    }


PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff")


def test_an_image_missing_from_the_registry_is_reported_with_the_kubelets_reason(
    cluster, namespace, controllers, scratch_image, kip_image
):
    present = scratch_image("present")
    missing = f"{cluster.registry.host}/test/never-pushed:1"
    port = free_port()
    controller = controllers(
        {
            "KUBECONFIG": str(cluster.kubeconfig),
            "NAMESPACE": namespace,
            "IMAGES": f"present={present};missing={missing};",
            "KIP_IMAGE": kip_image,
            "READY_TIMEOUT": "5s",
            "METRICS_HOST": "127.0.0.1",
            "METRICS_PORT": str(port),
        }
    )

    def reported() -> dict | None:
        found = failures(status(cluster, namespace), "missing")
        return found if set(found) == set(REAL_NODES) else None

    found = wait_until(reported, 120, "status to report the pull failure on every real node")
    for node, failure in found.items():
        assert failure["reason"] in PULL_FAILURES, (node, failure)
        # The registry's answer, as containerd and the kubelet passed it on.
        assert "not found" in failure["message"] and missing in failure["message"], failure
    failing = wait_until(
        lambda: {k: v for k, v in metric(port, "imagepuller_pods_failing").items() if v},
        60,
        "imagepuller_pods_failing",
    )
    assert any(reason in labels for labels in failing for reason in PULL_FAILURES), failing
    assert controller.process.poll() is None  # a failing image is reported, not fatal


def test_a_registry_down_during_a_refresh_is_reported_and_the_old_pods_keep_holding(
    cluster, api_client, namespace, puller, scratch_image
):
    image = scratch_image("refreshed", tag="latest")
    port = free_port()
    controller = puller(
        {"refreshed": image}, READY_TIMEOUT="5s", METRICS_HOST="127.0.0.1", METRICS_PORT=str(port)
    )
    nodes = set(REAL_NODES)
    core = client.CoreV1Api(api_client)
    before = {p.metadata.uid for p in core.list_namespaced_pod(namespace).items}
    watcher = HoldingWatcher(api_client, namespace, SELECTOR).start_and_wait()
    cluster.registry.process.stop()
    try:
        make_refresh_due(client.AppsV1Api(api_client), namespace)
        started = controller.wait_for("refresh_started", 30)
        found = wait_until(
            lambda: failures(status(cluster, namespace), "refreshed"),
            120,
            "status to report the failed pull of the refresh",
        )
        for failure in found.values():
            assert failure["reason"] in PULL_FAILURES, failure
            assert "connection refused" in failure["message"], failure
            assert failure["still_held"] is True, failure
        report = status(cluster, namespace)["pullers"][0]
        assert (report["ready"], report["holding"]) == (True, len(nodes)), report
        # After READY_TIMEOUT: the refresh counted as failed, the kubelet's reason in metrics.
        controller.wait_for(
            "daemonset_not_ready", 60, where=lambda e: e["_received"] > started["_received"]
        )
        failing = wait_until(
            lambda: {k: v for k, v in metric(port, "imagepuller_pods_failing").items() if v},
            60,
            "the failing pull in imagepuller_pods_failing",
        )
        assert any(reason in labels for labels in failing for reason in PULL_FAILURES), failing
        assert sum(metric(port, "imagepuller_refreshes_failed_total").values()) >= 1
        pods = core.list_namespaced_pod(namespace, label_selector=SELECTOR).items
        # The old pods still run and hold the image on every node.
        assert holding_nodes(pods) == nodes
        assert {p.metadata.uid for p in pods} & before
    finally:
        samples = watcher.stop()
        cluster.registry.process.start()
        wait_until(_answers(cluster.registry), 30, "the registry to answer again")
    assert min(watcher.fractions(nodes)) == 1.0, [
        sorted(nodes - held) for _, held in samples if held != nodes
    ]


def _answers(registry):
    def ready() -> bool:
        try:
            return registry.ready()
        except OSError:
            return False

    return ready


def _digest(stack, ref: str) -> str:
    return subprocess.run(
        [str(stack["crane"]), "digest", "--insecure", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
