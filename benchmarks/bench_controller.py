"""Controller benchmark on the local control plane (prints figures; asserts nothing).

    .venv/bin/python benchmarks/bench_controller.py [--nodes 50] [--cycles 100]

Figures:
- start-up: process spawn -> `daemonset_created` logged, and spawn -> `daemonset_ready`;
- readiness latency: the DaemonSet becomes ready as a separate API watch sees it -> the
  controller logs `daemonset_ready` (median and worst over the cycles);
- resident memory of the controller after cycle 1, 10, ... and the last cycle, and the
  growth from cycle 10 (after warm-up) to the end as a ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubernetes import client, config, watch  # noqa: E402

from localcluster.cluster import LocalCluster  # noqa: E402
from localcluster.process import rss_mib  # noqa: E402
from tests.controller_process import ControllerProcess  # noqa: E402

IMAGES = "java=quay.io/eclipse/che-java17-maven:next;node=docker.io/library/node:20-alpine;"
NAME = "kubernetes-image-puller"
NAMESPACE = "bench"


class ReadyWatcher(threading.Thread):
    """Records, per DaemonSet uid, when the API first reported it ready."""

    def __init__(self, api_client: client.ApiClient):
        super().__init__(daemon=True)
        self.apps = client.AppsV1Api(api_client)
        self.ready_at: dict[str, float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            self._watch()
        except Exception:  # noqa: BLE001 - the cluster is torn down under the watch at the end
            if not self.stopping.is_set():
                raise

    def _watch(self) -> None:
        while not self.stopping.is_set():
            stream = watch.Watch().stream(
                self.apps.list_namespaced_daemon_set, NAMESPACE, timeout_seconds=30
            )
            for event in stream:
                ds = event["object"]
                status = ds.status
                if (
                    event["type"] != "DELETED"
                    and status is not None
                    and (status.observed_generation or 0) >= (ds.metadata.generation or 0)
                    and status.number_ready == status.desired_number_scheduled
                    and status.desired_number_scheduled
                ):
                    self.ready_at.setdefault(ds.metadata.uid, time.monotonic())
                if self.stopping.is_set():
                    break


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--cycles", type=int, default=100)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="imagepuller-bench-") as tmp:
        print(f"starting a local cluster with {args.nodes} nodes ...", flush=True)
        with LocalCluster(Path(tmp), nodes=args.nodes) as cluster:
            print(f"cluster start-up: {cluster.start_seconds:.1f}s", flush=True)
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
            core = client.CoreV1Api(api)
            core.create_namespace({"metadata": {"name": NAMESPACE}})
            watcher = ReadyWatcher(api)
            watcher.start()

            # The shortest interval allowed (3.6 s): each refresh starts soon after the previous
            # DaemonSet is ready, so N cycles take about N x (create/ready/delete + 3.6 s).
            controller = ControllerProcess(
                {
                    "KUBECONFIG": str(cluster.kubeconfig),
                    "NAMESPACE": NAMESPACE,
                    "IMAGES": IMAGES,
                    "CACHING_INTERVAL_HOURS": "0.001",
                    "READY_TIMEOUT": "120s",
                    # Each cycle a new DaemonSet (the Go original's refresh), so that every
                    # cycle has a create and a ready to time; bench_refresh.py measures the
                    # rolling refresh.
                    "REFRESH_STRATEGY": "recreate",
                }
            )
            pid = controller.process.pid
            created = controller.wait_for("daemonset_created", 120)
            print(
                f"start-up to DaemonSet created: {created['_received'] - controller.started:.2f}s"
            )

            logged: list[tuple[str | None, float]] = []
            rss: dict[int, float] = {}
            began = time.monotonic()
            for cycle in range(1, args.cycles + 1):
                ready = controller.wait_for("daemonset_ready", 180)
                if cycle == 1:
                    print(
                        f"start-up to DaemonSet ready ({args.nodes} nodes): "
                        f"{ready['_received'] - controller.started:.2f}s"
                    )
                logged.append((_uid_of_last_created(controller), ready["_received"]))
                if cycle in (1, 10, 25, 50, 75) or cycle == args.cycles:
                    rss[cycle] = rss_mib(pid) or 0.0
                    print(
                        f"cycle {cycle:4d}: controller RSS {rss[cycle]:.1f} MiB "
                        f"({time.monotonic() - began:.0f}s)",
                        flush=True,
                    )
            controller.stop()
            watcher.stopping.set()
            # Matched after the run: the watcher may see a DaemonSet ready a little after the
            # controller logged it (a negative latency), so looking it up at once would miss it.
            latencies = [at - watcher.ready_at[u] for u, at in logged if u in watcher.ready_at]

    print("\n=== results ===")
    print(
        f"cycles: {args.cycles} on {args.nodes} nodes, "
        f"{(time.monotonic() - began) / args.cycles:.2f}s per cycle"
    )
    if latencies:
        print(
            f"ready (API) -> logged: median {statistics.median(latencies) * 1000:.1f} ms, "
            f"worst {max(latencies) * 1000:.1f} ms over {len(latencies)} of {len(logged)} cycles "
            "(negative: logged before the benchmark's own watch saw it)"
        )
    first, last = rss[min(rss)], rss[max(rss)]
    warm = 10 if 10 in rss else min(rss)
    print(
        f"controller RSS: {first:.1f} MiB after cycle 1, {last:.1f} MiB after cycle "
        f"{max(rss)}; growth after warm-up (cycle {warm} -> {max(rss)}): {last / rss[warm]:.3f}x"
    )
    return 0


def _uid_of_last_created(controller: ControllerProcess) -> str | None:
    for event in reversed(controller.events):
        if event.get("event") == "daemonset_created":
            return event.get("uid")
    return None


if __name__ == "__main__":
    raise SystemExit(main())
