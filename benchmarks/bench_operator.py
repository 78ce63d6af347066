"""Operator mode at scale, before and after, side by side (prints figures; asserts nothing).

    .venv/bin/python benchmarks/bench_operator.py [--before REV] [--nodes 50]
        [--resources 200] [--namespaces 10] [--idle 60]

One `imagepuller operator` process at a time, first REV's ("before", exported with ``git
archive``; by default the last commit before one work queue served every resource), then the
working tree's ("after"), on one local control plane of ``--nodes`` simulated nodes. Each serves
``--resources`` KubernetesImagePuller resources spread over ``--namespaces`` namespaces (each
with a DaemonSet name of its own). Printed per version:
- the operator's threads and resident memory with one resource Ready and with all Ready, and
  the memory each additional resource costs;
- the watches open on the API server for DaemonSets and for the resources, counted by the API
  server itself (``apiserver_longrunning_requests``, less what was open before the operator);
- per resource, the time from the API showing its DaemonSet complete to its status saying
  Ready on every node (median, 90th percentile, worst), both seen by watches of this benchmark;
- the operator's API requests while idle for ``--idle`` seconds (from its own /metrics).

The controller manager and the scheduler run with ``--kube-api-qps 200`` here: 200 DaemonSets
on 50 nodes are 10,000 pods, which their default client throttling (20 and 50 per second)
would take many minutes to create, measuring the cluster rather than the operator; and each
simulated node takes ``--resources`` + 20 pods (the default, 110, would leave the DaemonSets
past the 110th unschedulable).
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubernetes import client, config, watch  # noqa: E402

from benchmarks.bench_startup import export_tree  # noqa: E402
from benchmarks.machine import describe  # noqa: E402
from benchmarks.pullers import create_puller, install_crd, is_ready  # noqa: E402
from imagepuller.resource import GROUP, PLURAL, VERSION  # noqa: E402
from localcluster.cluster import LocalCluster  # noqa: E402
from localcluster.process import rss_mib, thread_count  # noqa: E402
from tests.controller_process import ControllerProcess  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

# The last commit before the operator's resources shared one work queue and its watches.
DEFAULT_BEFORE = "ee923a5"
IMAGES = "java=quay.io/eclipse/che-java17-maven:next;"
WATCHED = ("daemonsets", "kubernetesimagepullers")


def requests_by_verb(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("imagepuller_api_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            verb = labels.split('verb="', 1)[1].split('"', 1)[0]
            resource = labels.split('resource="', 1)[1].split('"', 1)[0]
            key = f"{verb} {resource}"
            counts[key] = counts.get(key, 0.0) + float(value)
    return counts


def open_watches(api: client.ApiClient) -> dict[str, float]:
    """Watches the API server has open now, per resource (its own gauge)."""
    auth = api.configuration.auth_settings()["BearerToken"]
    response = api.call_api(
        "GET", f"{api.configuration.host}/metrics", header_params={auth["key"]: auth["value"]}
    )
    if response.status != 200:
        raise RuntimeError(f"the API server's /metrics answered {response.status}")
    response.read()
    counts = dict.fromkeys(WATCHED, 0.0)
    for line in response.data.decode().splitlines():
        if line.startswith("apiserver_longrunning_requests{") and 'verb="WATCH"' in line:
            resource = line.split('resource="', 1)[1].split('"', 1)[0]
            if resource in counts:
                counts[resource] += float(line.rsplit(" ", 1)[1])
    return counts


class Seen:
    """When each DaemonSet first showed complete and each resource first said Ready, seen by
    this benchmark's own two watches (their times are the events' arrival)."""

    def __init__(self, api: client.ApiClient, nodes: int):
        self.apps, self.custom, self.nodes = (
            client.AppsV1Api(api),
            client.CustomObjectsApi(api),
            nodes,
        )
        self.complete: dict[tuple[str, str], float] = {}
        self.ready: dict[tuple[str, str], float] = {}
        self.stop = threading.Event()
        for target in (self._daemonsets, self._resources):
            threading.Thread(target=target, daemon=True).start()

    def _daemonsets(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(Exception):  # a broken watch is opened again
                self._watch_daemonsets()

    def _watch_daemonsets(self) -> None:
        for event in watch.Watch().stream(
            self.apps.list_daemon_set_for_all_namespaces, timeout_seconds=30
        ):
            ds = event["object"]
            st, key = ds.status, (ds.metadata.namespace, ds.metadata.name)
            if (
                key not in self.complete
                and st is not None
                and st.observed_generation == ds.metadata.generation
                and st.desired_number_scheduled == self.nodes
                and st.updated_number_scheduled == self.nodes
                and st.number_available == self.nodes
            ):
                self.complete[key] = time.monotonic()

    def _resources(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(Exception):
                self._watch_resources()

    def _watch_resources(self) -> None:
        for event in watch.Watch().stream(
            self.custom.list_cluster_custom_object,
            GROUP,
            VERSION,
            PLURAL,
            timeout_seconds=30,
        ):
            obj: dict[str, Any] = event["object"]
            key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
            if key not in self.ready and is_ready(obj, self.nodes):
                self.ready[key] = time.monotonic()


def serve(
    version: str, tree: Path, kubeconfig: Path, api: client.ApiClient, args: Any
) -> dict[str, Any]:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    namespaces = [f"{version}-{i:02d}" for i in range(args.namespaces)]
    for ns in [f"{version}-operator", *namespaces]:
        core.create_namespace({"metadata": {"name": ns}})
    keys = [(namespaces[i % len(namespaces)], f"cache-{i:03d}") for i in range(args.resources)]
    seen = Seen(api, args.nodes)
    time.sleep(2)  # this benchmark's own watches are open: they are part of the baseline
    baseline = open_watches(api)
    port = free_port()
    operator = ControllerProcess(
        {
            "KUBECONFIG": str(kubeconfig),
            "POD_NAMESPACE": f"{version}-operator",
            "METRICS_HOST": "127.0.0.1",
            "METRICS_PORT": str(port),
        },
        argv=[sys.executable, "-m", "imagepuller", "operator"],
        cwd=str(tree),
    )
    pid = operator.process.pid
    print(f"{version}: operator pid {pid}", flush=True)  # for a profiler to attach to
    figures: dict[str, Any] = {}
    try:
        operator.wait_for("leader_elected", 60)
        create_puller(custom, keys[0][0], IMAGES, keys[0][1], daemonset=keys[0][1])
        wait_until(lambda: keys[0] in seen.ready, 300, "the first resource Ready")
        time.sleep(2)  # the first rollout's garbage settles before memory is read
        figures["rss_one"], figures["threads_one"] = rss_mib(pid) or 0.0, thread_count(pid) or 0
        figures["watches_one"] = open_watches(api)
        began = time.monotonic()
        for namespace, name in keys[1:]:
            create_puller(custom, namespace, IMAGES, name, daemonset=name)
        wait_until(lambda: set(keys) <= set(seen.ready), 1800, "every resource Ready")
        figures["all_ready_seconds"] = time.monotonic() - began
        time.sleep(2)
        figures["rss_all"], figures["threads_all"] = rss_mib(pid) or 0.0, thread_count(pid) or 0
        figures["watches_all"] = open_watches(api)
        figures["lags"] = sorted(
            seen.ready[key] - seen.complete[key] for key in keys if key in seen.complete
        )
        before = requests_by_verb(port)
        time.sleep(args.idle)
        after = requests_by_verb(port)
        figures["idle"] = {
            what: after.get(what, 0.0) - before.get(what, 0.0)
            for what in sorted(set(after) | set(before))
            if after.get(what, 0.0) != before.get(what, 0.0)
        }
    finally:
        operator.stop()
        seen.stop.set()
        for ns in [f"{version}-operator", *namespaces]:
            core.delete_namespace(ns)
    figures["baseline"] = baseline
    print(f"{version}: emptying its namespaces ...", flush=True)
    wait_until(
        lambda: not [n for n in core.list_namespace().items if n.metadata.name.startswith(version)],
        1800,
        f"{version}'s namespaces gone",
    )
    return figures


def summary(f: dict[str, Any], n: int, idle: float) -> list[tuple[str, str]]:
    """One version's figures as the rows of the table."""

    def watches(when: str, resource: str) -> str:
        return f"{f[when][resource] - f['baseline'][resource]:.0f}"

    lags = f["lags"]
    requests = ", ".join(f"{what} {count:.0f}" for what, count in f["idle"].items())
    return [
        ("threads, 1 resource Ready", f"{f['threads_one']}"),
        (f"threads, {n} resources Ready", f"{f['threads_all']}"),
        ("DaemonSet watches open, 1 resource", watches("watches_one", "daemonsets")),
        (f"DaemonSet watches open, {n} resources", watches("watches_all", "daemonsets")),
        (f"resource watches open, {n} resources", watches("watches_all", WATCHED[1])),
        ("RSS, 1 resource Ready", f"{f['rss_one']:.1f} MiB"),
        (f"RSS, {n} resources Ready", f"{f['rss_all']:.1f} MiB"),
        ("RSS per additional resource", f"{(f['rss_all'] - f['rss_one']) / (n - 1):.3f} MiB"),
        (f"{n - 1} more created -> all Ready", f"{f['all_ready_seconds']:.1f} s"),
        ("DaemonSet complete -> status Ready, median", f"{statistics.median(lags):.2f} s"),
        ("DaemonSet complete -> status Ready, p90", f"{p90(lags):.2f} s"),
        ("DaemonSet complete -> status Ready, worst", f"{lags[-1]:.2f} s"),
        (f"API requests while idle ({idle:.0f} s)", requests or "none"),
    ]


def p90(values: list[float]) -> float:
    return values[min(len(values) - 1, int(len(values) * 0.9))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default=DEFAULT_BEFORE, help="git revision to compare with")
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--resources", type=int, default=200)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument(
        "--after-only", action="store_true", help="run only the working tree (to profile it)"
    )
    args = parser.parse_args()
    print(describe(), flush=True)
    versions = ("after",) if args.after_only else ("before", "after")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="imagepuller-bench-") as tmp:
        trees = {"after": ROOT}
        if not args.after_only:
            trees["before"] = export_tree(args.before, Path(tmp) / "before")
        for tree in trees.values():
            compileall.compile_dir(tree / "imagepuller", quiet=1)
        print(f"starting a local cluster with {args.nodes} nodes ...", flush=True)
        with LocalCluster(
            Path(tmp) / "cluster",
            nodes=args.nodes,
            api_qps=200,
            pods_per_node=args.resources + 20,
        ) as cluster:
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
            install_crd(client.ApiextensionsV1Api(api))
            # The garbage collector watches the new kind once its discovery (every 30 s) finds
            # it: wait for that, or its watch would be counted as the operator's.
            wait_until(
                lambda: open_watches(api)["kubernetesimagepullers"] >= 1,
                120,
                "the garbage collector's watch of the resources",
            )
            for version in versions:
                print(f"{version}: {args.resources} resources ...", flush=True)
                results[version] = serve(version, trees[version], cluster.kubeconfig, api, args)
                print(f"{version}: {results[version]}", flush=True)

    n = args.resources
    print(f"\n=== results: before = {args.before}, after = the working tree ===")
    print(
        f"{describe()}; {n} resources in {args.namespaces} namespaces x {args.nodes} nodes, "
        "one operator process"
    )

    shown = {version: summary(results[version], n, args.idle) for version in versions}
    print(f"{'measure':48s}" + "".join(f" {version:>26s}" for version in versions))
    for row, (label, _) in enumerate(shown["after"]):
        print(f"{label:48s}" + "".join(f" {shown[v][row][1]:>26s}" for v in versions))
    seen = " and ".join(str(len(results[version]["lags"])) for version in versions)
    print(
        f"(one run each, {' then '.join(versions)}; the lags are over the resources whose "
        f"DaemonSet the benchmark saw complete: {seen} of {n})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
