"""`make run`: the controller in the foreground, against KUBECONFIG or a local cluster.

With KUBECONFIG set, the controller runs against that cluster with the environment as given
(nothing is added: pulling example images onto a real cluster would be a surprise).
Without it, a local control plane with 5 simulated nodes and one real node (REAL_NODES, a
kubelet with containerd; none when not root) starts first, the namespace is created (enforcing
Pod Security `restricted`), and the controller runs there with a small example image list,
pushed to the cluster's own registry when there is a real node to pull it. Ctrl-C stops the
controller (which deletes its DaemonSet), then the cluster.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from .binaries import REPO_ROOT, find_node_stack
from .cluster import LocalCluster
from .registry import push_data_image, push_kip_image

NODES = 5
EXAMPLE_ENV = {
    "IMAGES": (
        "java=quay.io/eclipse/che-java17-maven:next;"
        "node=docker.io/library/node:20-alpine;"
        "python=docker.io/library/python:3.12-slim;"
    ),
    "NAMESPACE": "k8s-image-puller",
    "READY_TIMEOUT": "2m",
}


def run_controller(env: dict[str, str]) -> int:
    """Run `imagepuller run` as a child; forward SIGINT/SIGTERM to it and wait for it."""
    child = subprocess.Popen([sys.executable, "-m", "imagepuller", "run"], env=env)

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    # The terminal's Ctrl-C reaches the child too (same process group); forwarding covers a
    # SIGTERM sent to this process alone. Either way we wait for the child to finish cleanly.
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    return child.wait()


def create_namespace(cluster: LocalCluster, name: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
        },
    }
    request = urllib.request.Request(
        f"{cluster.server}/api/v1/namespaces",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {cluster.token}", "Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    with urllib.request.urlopen(request, context=context, timeout=30):
        pass


def real_node_count(env: dict[str, str]) -> int:
    """REAL_NODES (default 1); 0 where a kubelet cannot run (not root), with a note."""
    wanted = int(env.get("REAL_NODES") or "1")
    if wanted and os.geteuid() != 0:
        print("make run: not root, so no real node (a kubelet needs root)", file=sys.stderr)
        return 0
    return wanted


def example_images(cluster: LocalCluster) -> dict[str, str]:
    """On a cluster with real nodes, the example images and KIP_IMAGE are pushed to its
    registry (the real kubelet pulls them; the internet is not assumed)."""
    if cluster.registry is None:
        return {}
    stack = find_node_stack()
    host = cluster.registry.host
    sleep = REPO_ROOT / "build" / "sleep"
    subprocess.run(["bash", str(REPO_ROOT / "hack" / "build-sleep.sh"), str(sleep)], check=True)
    push_kip_image(stack["crane"], f"{host}/examples/kip:1", stack["busybox"], sleep)
    images = ""
    for name in ("editor", "java", "node"):
        ref = f"{host}/examples/{name}:1"
        push_data_image(stack["crane"], ref, f"the {name} example image\n".encode())
        images += f"{name}={ref};"
    return {"IMAGES": images, "KIP_IMAGE": f"{host}/examples/kip:1"}


def main() -> int:
    env = dict(os.environ)
    if env.get("KUBECONFIG"):
        print(f"make run: using KUBECONFIG={env['KUBECONFIG']}", file=sys.stderr)
        return run_controller(env)
    real_nodes = real_node_count(env)
    with tempfile.TemporaryDirectory(prefix="imagepuller-run-") as tmp:
        print(
            f"make run: starting a local cluster with {NODES} simulated nodes and {real_nodes} "
            "real ones ...",
            file=sys.stderr,
        )
        with LocalCluster(Path(tmp), nodes=NODES, real_nodes=real_nodes) as cluster:
            print(
                f"make run: cluster ready in {cluster.start_seconds:.1f}s; "
                f"in another shell: export KUBECONFIG={cluster.kubeconfig}",
                file=sys.stderr,
            )
            create_namespace(cluster, EXAMPLE_ENV["NAMESPACE"])
            # The endpoints only on this machine (as everything the local cluster runs).
            env = {
                **EXAMPLE_ENV,
                **example_images(cluster),
                "METRICS_HOST": "127.0.0.1",
                **env,
                "KUBECONFIG": str(cluster.kubeconfig),
            }
            code = run_controller(env)
            print("make run: controller stopped; stopping the cluster", file=sys.stderr)
            return code


if __name__ == "__main__":
    raise SystemExit(main())
