"""Operator mode at scale on the local control plane (prints figures; asserts nothing).

    .venv/bin/python benchmarks/bench_operator.py [--nodes 20] [--resources 50] [--idle 120]

One `imagepuller operator` process serves ``--resources`` KubernetesImagePuller resources, one
per namespace, on ``--nodes`` simulated nodes. Printed:
- the operator's RSS with 1 resource Ready, with all Ready, and the cost of each additional one;
- per resource, the time from its creation to its status saying Ready on every node (median,
  90th percentile, worst), the resources created back to back;
- the operator's API requests while idle for ``--idle`` seconds (from its own /metrics), per hour.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubernetes import client, config  # noqa: E402

from benchmarks.machine import describe  # noqa: E402
from benchmarks.pullers import create_puller, install_crd, is_ready, list_pullers  # noqa: E402
from localcluster.cluster import LocalCluster  # noqa: E402
from localcluster.process import rss_mib  # noqa: E402
from tests.controller_process import ControllerProcess  # noqa: E402
from tests.ports import free_port  # noqa: E402

IMAGES = "java=quay.io/eclipse/che-java17-maven:next;node=docker.io/library/node:20-alpine;"


def requests_by_verb(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("imagepuller_api_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            verb = labels.split('verb="', 1)[1].split('"', 1)[0]
            counts[verb] = counts.get(verb, 0.0) + float(value)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--resources", type=int, default=50)
    parser.add_argument("--idle", type=float, default=120.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagepuller-bench-") as tmp:
        print(f"starting a local cluster with {args.nodes} nodes ...", flush=True)
        with LocalCluster(Path(tmp), nodes=args.nodes) as cluster:
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
            core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
            apps = client.AppsV1Api(api)
            install_crd(client.ApiextensionsV1Api(api))
            namespaces = [f"bench-{i:03d}" for i in range(args.resources)]
            for ns in ["bench-operator", *namespaces]:
                core.create_namespace({"metadata": {"name": ns}})
            port = free_port()
            operator = ControllerProcess(
                {
                    "KUBECONFIG": str(cluster.kubeconfig),
                    "POD_NAMESPACE": "bench-operator",
                    "METRICS_HOST": "127.0.0.1",
                    "METRICS_PORT": str(port),
                },
                argv=[sys.executable, "-m", "imagepuller", "operator"],
            )
            try:
                operator.wait_for("leader_elected", 60)
                created: dict[str, float] = {}

                def create(ns: str) -> None:
                    create_puller(custom, ns, IMAGES)
                    created[ns] = time.monotonic()

                daemonsets_ready: dict[str, float] = {}

                def wait_ready(pending: set[str]) -> dict[str, float]:
                    """Creation -> status Ready per namespace; also notes when the API first
                    showed each DaemonSet complete, to tell the cluster's pace from ours."""
                    done: dict[str, float] = {}
                    deadline = time.monotonic() + 900
                    while pending - set(done) and time.monotonic() < deadline:
                        now = time.monotonic()
                        for ds in apps.list_daemon_set_for_all_namespaces().items:
                            ns, st = ds.metadata.namespace, ds.status
                            if (
                                ns in pending
                                and ns not in daemonsets_ready
                                and st.desired_number_scheduled == args.nodes
                                and st.number_available == args.nodes
                                and st.updated_number_scheduled == args.nodes
                            ):
                                daemonsets_ready[ns] = now - created[ns]
                        listed = list_pullers(custom)
                        now = time.monotonic()
                        for item in listed:
                            ns = item["metadata"]["namespace"]
                            if ns in pending and ns not in done and is_ready(item, args.nodes):
                                done[ns] = now - created[ns]
                        time.sleep(0.2)
                    return done

                create(namespaces[0])
                first = wait_ready({namespaces[0]})
                time.sleep(2)  # let the first rollout's garbage settle before reading memory
                rss_one = rss_mib(operator.process.pid) or 0.0
                print(f"1 resource Ready in {first[namespaces[0]]:.2f}s; RSS {rss_one:.1f} MiB")
                began = time.monotonic()
                for ns in namespaces[1:]:
                    create(ns)
                latencies = wait_ready(set(namespaces[1:]))
                total = time.monotonic() - began
                time.sleep(2)
                rss_all = rss_mib(operator.process.pid) or 0.0
                print(
                    f"{len(latencies)} of {len(namespaces) - 1} more Ready in {total:.1f}s; "
                    f"RSS {rss_all:.1f} MiB",
                    flush=True,
                )
                before = requests_by_verb(port)
                time.sleep(args.idle)
                after = requests_by_verb(port)
            finally:
                operator.stop()
    values = sorted(latencies.values())
    per_hour = {
        verb: (after.get(verb, 0.0) - before.get(verb, 0.0)) * 3600 / args.idle
        for verb in sorted(set(after) | set(before))
    }
    print("\n=== results ===")
    print(f"{describe()}; {args.resources} resources x {args.nodes} nodes, one operator process")
    print(
        f"operator RSS: {rss_one:.1f} MiB with 1 resource, {rss_all:.1f} MiB with "
        f"{args.resources}; {(rss_all - rss_one) / max(1, args.resources - 1):.2f} MiB per "
        "additional resource"
    )
    if values:
        p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
        print(
            f"creation -> status Ready on {args.nodes} nodes (resources created back to back): "
            f"median {statistics.median(values):.2f}s, p90 {p90:.2f}s, worst {values[-1]:.2f}s"
        )
    lags = sorted(
        latencies[ns] - daemonsets_ready[ns] for ns in latencies if ns in daemonsets_ready
    )
    if lags:
        print(
            "status Ready after the API showed the DaemonSet complete (the operator's own "
            f"share): median {statistics.median(lags):.2f}s, worst {lags[-1]:.2f}s; "
            f"DaemonSet complete after creation: median "
            f"{statistics.median(daemonsets_ready[ns] for ns in latencies):.2f}s"
        )
    print(
        f"API requests while idle ({args.idle:.0f} s window), per hour: "
        + ", ".join(f"{verb} {count:.0f}" for verb, count in per_hour.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
