"""Fixtures of the tests on real nodes: a cluster of its own with two real kubelets.

Everything under tests/realnode/ is marked ``cluster`` and ``real_node``. These tests need what a
kubelet and containerd need on this machine (root, overlayfs, network namespaces, cgroups); where
something is missing they are skipped with the reason, except under ``CI=true``, where a missing
prerequisite fails them: CI must not pass by skipping the real thing.

Fixtures (session unless said):
    cluster        overrides the shared kwok cluster for this directory: no simulated nodes and
                   ``real-0``, ``real-1`` (kubelet + containerd), with a local registry; so
                   ``api_client``, ``namespace`` and ``controllers`` of tests/conftest.py work
                   here against it. Stopped at the end of the session, which puts the machine
                   back (as test_cleanup.py checks for a cluster of its own).
    stack          the node stack's binaries (crane, crictl, busybox ...).
    kip_image      a KIP_IMAGE on the local registry: static busybox as /bin/sh and cp, and the
                   static sleep as /bin/sleep (what the init container copies).
    scratch_image  ``scratch_image(name)`` pushes an image with one data file and nothing else
                   (no shell, no libc): only the copied static sleep can hold it.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REAL_NODES = ("real-0", "real-1")


def missing_prerequisites() -> list[str]:
    """What this machine lacks for a real node, in words (empty when nothing)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (the kubelet and containerd run as root)")
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError:
        filesystems = ""
    if "overlay" not in filesystems:
        missing.append("overlayfs (containerd's snapshotter), not in /proc/filesystems")
    if not Path("/proc/self/ns/net").exists():
        missing.append("network namespaces (/proc/self/ns/net)")
    elif os.geteuid() == 0:
        probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
        if probe.returncode != 0:
            missing.append(f"network namespaces (unshare --net: {probe.stderr.strip()})")
    if not Path("/sys/fs/cgroup").is_dir():
        missing.append("cgroups (/sys/fs/cgroup)")
    if subprocess.run(["which", "ip"], capture_output=True).returncode != 0:
        missing.append("iproute2's ip")
    return missing


def _require_real_nodes() -> None:
    missing = missing_prerequisites()
    if not missing:
        return
    reason = "real nodes need " + "; ".join(missing)
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing prerequisite fails, it does not skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def stack() -> dict[str, Path]:
    from localcluster.binaries import find_node_stack

    _require_real_nodes()
    return find_node_stack()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory, stack: dict[str, Path]) -> Iterator[object]:
    from localcluster.cluster import LocalCluster

    workdir = tmp_path_factory.mktemp("realcluster")
    local = LocalCluster(workdir, nodes=0, real_nodes=len(REAL_NODES))
    try:
        local.start(timeout=180)
    except Exception as exc:  # noqa: BLE001 - any reason is reported the same way
        pytest.fail(
            f"the local cluster with real nodes did not start: {exc}\n(logs in {workdir})",
            pytrace=False,
        )
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def kip_image(cluster: object, stack: dict[str, Path]) -> str:
    from localcluster.registry import push_kip_image

    sleep = REPO / "build" / "sleep"
    subprocess.run(["bash", str(REPO / "hack" / "build-sleep.sh"), str(sleep)], check=True)
    ref = f"{cluster.registry.host}/test/kip:1"
    push_kip_image(stack["crane"], ref, stack["busybox"], sleep)
    return ref


@pytest.fixture(scope="session")
def scratch_image(cluster: object, stack: dict[str, Path]) -> Callable[..., str]:
    """``scratch_image(name, tag="1", content=None)``: push and return the reference; the
    content is unique unless given, so every image is one no node has pulled before."""
    from localcluster.registry import push_data_image

    def push(name: str, tag: str = "1", content: bytes | None = None) -> str:
        ref = f"{cluster.registry.host}/test/{name}:{tag}"
        data = content if content is not None else f"{name} {uuid.uuid4()}\n".encode()
        push_data_image(stack["crane"], ref, data)
        return ref

    return push


def imagepuller_status(cluster: object, namespace: str) -> tuple[int, dict]:
    """`imagepuller status -n NS -o json` as the admin: its exit code and document
    ({"stderr": ...} while it has nothing to show: exit 2, no output, until the DaemonSet
    exists)."""
    import json
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "imagepuller", "status", "-n", namespace, "-o", "json"],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.returncode, json.loads(out.stdout) if out.stdout else {"stderr": out.stderr}


def crictl_images(cluster: object, node: str) -> dict[str, str]:
    """``{repo:tag: digest}`` of the images in the node's runtime (``crictl images``)."""
    import json

    listed = json.loads(cluster.real_node(node).crictl("images", "-o", "json"))
    out = {}
    for image in listed.get("images") or []:
        digest = (image.get("repoDigests") or ["@"])[0].split("@", 1)[1]
        for tag in image.get("repoTags") or []:
            out[tag] = digest
    return out
