"""Memory cost of the metrics: the controller's RSS with METRICS_PORT on (and /metrics scraped
as Prometheus would) against METRICS_PORT=0, on the local control plane (prints figures;
asserts nothing).

    .venv/bin/python benchmarks/bench_metrics.py [--nodes 50] [--rounds 3] [--refreshes 10]

Each round runs both settings one after the other (off, then on), each from a fresh process:
created, ready, then ``--refreshes`` rolling refreshes (each made due through the API and
followed to `refresh_complete`), with /metrics read after each one when on. The RSS is read
from /proc after the last refresh. Printed: the RSS of each run, the median per setting, and
the ratio on/off.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubernetes import client, config  # noqa: E402

from benchmarks.machine import describe  # noqa: E402
from localcluster.cluster import LocalCluster  # noqa: E402
from localcluster.process import rss_mib  # noqa: E402
from tests.apiobjects import read_or_none  # noqa: E402
from tests.controller_process import ControllerProcess  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

IMAGES = "java=quay.io/eclipse/che-java17-maven:next;node=docker.io/library/node:20-alpine;"
NAME = "kubernetes-image-puller"
NAMESPACE = "bench"


def run_once(cluster: LocalCluster, apps: client.AppsV1Api, metrics: bool, refreshes: int) -> float:
    port = free_port() if metrics else 0
    controller = ControllerProcess(
        {
            "KUBECONFIG": str(cluster.kubeconfig),
            "NAMESPACE": NAMESPACE,
            "IMAGES": IMAGES,
            "READY_TIMEOUT": "120s",
            "METRICS_HOST": "127.0.0.1",
            "METRICS_PORT": str(port),
        }
    )
    try:
        controller.wait_for("daemonset_ready", 180)
        for _ in range(refreshes):
            apps.patch_namespaced_daemon_set(
                NAME,
                NAMESPACE,
                {
                    "metadata": {
                        "annotations": {"imagepuller.io/refreshed-at": "2020-01-01T00:00:00Z"}
                    }
                },
            )
            controller.wait_for("refresh_complete", 180)
            if metrics:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    r.read()
        return rss_mib(controller.process.pid) or 0.0
    finally:
        controller.stop()
        # The next run starts from no DaemonSet: the stop deleted it (no owner); wait for it.
        wait_until(
            lambda: read_or_none(apps.read_namespaced_daemon_set, NAME, NAMESPACE) is None,
            120,
            "the DaemonSet's deletion",
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--refreshes", type=int, default=10)
    args = parser.parse_args()
    results: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="imagepuller-bench-") as tmp:
        print(f"starting a local cluster with {args.nodes} nodes ...", flush=True)
        with LocalCluster(Path(tmp), nodes=args.nodes) as cluster:
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
            client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
            apps = client.AppsV1Api(api)
            for round_ in range(1, args.rounds + 1):
                for metrics in (False, True):
                    rss = run_once(cluster, apps, metrics, args.refreshes)
                    results[metrics].append(rss)
                    print(
                        f"round {round_}: metrics {'on ' if metrics else 'off'}: RSS {rss:.1f} MiB "
                        f"after ready + {args.refreshes} refreshes",
                        flush=True,
                    )
    off, on = statistics.median(results[False]), statistics.median(results[True])
    print("\n=== results ===")
    print(f"{describe()}; {args.nodes} nodes, {args.rounds} rounds")
    print(
        f"controller RSS, median: metrics off {off:.1f} MiB, on {on:.1f} MiB; "
        f"on/off {on / off:.3f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
