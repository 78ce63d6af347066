"""Start-up, CPU and memory, before and after, side by side (prints figures; asserts nothing).

    .venv/bin/python benchmarks/bench_startup.py [--before REV] [--nodes 50] [--starts 7]
        [--refreshes 20] [--pullers 50] [--puller-nodes 5]

Two versions of the puller run on the same local control plane, one at a time: the working
tree ("after") and REV ("before", exported with ``git archive``; by default the last commit
before issue 11). Their runs alternate, so that whatever else loads the machine falls on both.

Printed per version (median and range over ``--starts`` starts, 5 images):
- process start -> ``daemonset_created`` logged, on ``--nodes`` nodes;
- CPU seconds of the process (user + system) when it logs ``daemonset_ready``;
- resident memory at ready (the endpoints off: METRICS_PORT=0); then, with them on and
  /metrics read after each refresh, at ready and after ``--refreshes`` rolling refreshes;
- operator mode, on a second cluster of ``--puller-nodes`` nodes: resident memory with one
  KubernetesImagePuller Ready, with ``--pullers`` Ready (one per namespace), and the cost of
  each additional one;
with the ratio before/after, the Python version and the machine.
"""

from __future__ import annotations

import argparse
import compileall
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubernetes import client, config  # noqa: E402

from benchmarks.machine import describe  # noqa: E402
from benchmarks.pullers import create_puller, install_crd, is_ready, list_pullers  # noqa: E402
from imagepuller.resource import GROUP, PLURAL, VERSION  # noqa: E402
from localcluster.cluster import LocalCluster  # noqa: E402
from localcluster.process import rss_mib  # noqa: E402
from tests.controller_process import ControllerProcess  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

# The last commit before issue 11's changes.
DEFAULT_BEFORE = "ee774b6"
IMAGES = ";".join(
    [
        "java=quay.io/eclipse/che-java17-maven:next",
        "node=docker.io/library/node:20-alpine",
        "udi=quay.io/devfile/universal-developer-image:ubi9-latest",
        "code=quay.io/che-incubator/che-code:latest",
        "go=docker.io/library/golang:1.23",
    ]
)
NAMESPACE = "bench"


def export_tree(rev: str, dest: Path) -> Path:
    """The ``imagepuller`` package as it was at ``rev``, compiled, in ``dest``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "imagepuller"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(port: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        response.read()


class Bench:
    def __init__(self, kubeconfig: Path, trees: dict[str, Path]):
        self.kubeconfig = kubeconfig
        self.trees = trees
        api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.extensions = client.ApiextensionsV1Api(api)

    def start(self, version: str, env: dict[str, str], command: str = "run") -> ControllerProcess:
        return ControllerProcess(
            {"KUBECONFIG": str(self.kubeconfig), **env},
            argv=[sys.executable, "-m", "imagepuller", command],
            cwd=str(self.trees[version]),
        )

    def empty(self, namespace: str) -> None:
        """No DaemonSet and no pod left in ``namespace``: every start begins alike."""
        for ds in self.apps.list_namespaced_daemon_set(namespace).items:
            self.apps.delete_namespaced_daemon_set(
                ds.metadata.name, namespace, propagation_policy="Background"
            )
        wait_until(
            lambda: (
                not self.apps.list_namespaced_daemon_set(namespace).items
                and not self.core.list_namespaced_pod(namespace).items
            ),
            300,
            f"emptying namespace {namespace}",
        )

    def start_once(self, version: str) -> tuple[float, float, float]:
        """(start -> created, CPU at ready, RSS at ready) of one start."""
        self.empty(NAMESPACE)
        puller = self.start(
            version,
            {"NAMESPACE": NAMESPACE, "IMAGES": IMAGES, "CACHING_INTERVAL_HOURS": "1"},
        )
        try:
            created = puller.wait_for("daemonset_created", 120)["_received"] - puller.started
            puller.wait_for("daemonset_ready", 300)
            pid = puller.process.pid
            return created, cpu_seconds(pid), rss_mib(pid) or 0.0
        finally:
            puller.stop()

    def refreshes(self, version: str, count: int) -> tuple[float, float]:
        """(RSS at ready, RSS after ``count`` rolling refreshes), with the metrics endpoint on
        (the default in a cluster) and read after each refresh."""
        self.empty(NAMESPACE)
        port = free_port()
        # The shortest interval allowed (3.6 s): each refresh starts soon after the last.
        puller = self.start(
            version,
            {
                "NAMESPACE": NAMESPACE,
                "IMAGES": IMAGES,
                "CACHING_INTERVAL_HOURS": "0.001",
                "METRICS_HOST": "127.0.0.1",
                "METRICS_PORT": str(port),
            },
        )
        try:
            puller.wait_for("daemonset_ready", 300)
            scrape(port)
            at_ready = rss_mib(puller.process.pid) or 0.0
            for _ in range(count):
                puller.wait_for("refresh_complete", 300)
                scrape(port)
            return at_ready, rss_mib(puller.process.pid) or 0.0
        finally:
            puller.stop()

    def operator(self, version: str, pullers: int, nodes: int) -> tuple[float, float]:
        """(RSS with one puller Ready, RSS with ``pullers`` Ready), one namespace each."""
        namespaces = [f"{version}-{i:03d}" for i in range(pullers)]
        for ns in [f"{version}-operator", *namespaces]:
            self.core.create_namespace({"metadata": {"name": ns}})
        operator = self.start(version, {"POD_NAMESPACE": f"{version}-operator"}, "operator")
        try:
            operator.wait_for("leader_elected", 60)
            create_puller(self.custom, namespaces[0], IMAGES)
            wait_until(lambda: self.all_ready(namespaces[:1], nodes), 300, "one puller Ready")
            one = rss_mib(operator.process.pid) or 0.0
            for ns in namespaces[1:]:
                create_puller(self.custom, ns, IMAGES)
            wait_until(lambda: self.all_ready(namespaces, nodes), 900, "every puller Ready")
            return one, rss_mib(operator.process.pid) or 0.0
        finally:
            operator.stop()
            # The next version's operator watches every namespace: it must not find these.
            for ns in namespaces:
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "cache")
            wait_until(
                lambda: not list_pullers(self.custom),
                300,
                "the pullers' deletion",
            )

    def all_ready(self, namespaces: list[str], nodes: int) -> bool:
        ready = {
            p["metadata"]["namespace"] for p in list_pullers(self.custom) if is_ready(p, nodes)
        }
        return set(namespaces) <= ready


def spread(values: list[float], unit: str, digits: int = 2) -> str:
    return (
        f"{statistics.median(values):.{digits}f} {unit} "
        f"[{min(values):.{digits}f}-{max(values):.{digits}f}]"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default=DEFAULT_BEFORE, help="git revision to compare with")
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--starts", type=int, default=7)
    parser.add_argument("--refreshes", type=int, default=20)
    parser.add_argument("--pullers", type=int, default=50)
    parser.add_argument("--puller-nodes", type=int, default=5)
    args = parser.parse_args()
    print(describe(), flush=True)
    versions = ("before", "after")
    with tempfile.TemporaryDirectory(prefix="imagepuller-bench-") as tmp:
        trees = {"before": export_tree(args.before, Path(tmp) / "before"), "after": ROOT}
        for tree in trees.values():  # neither start pays for compiling its bytecode
            compileall.compile_dir(tree / "imagepuller", quiet=1)
        starts: dict[str, list[tuple[float, float, float]]] = {v: [] for v in versions}
        memory: dict[str, tuple[float, float]] = {}
        operator: dict[str, tuple[float, float]] = {}
        print(f"starting a local cluster with {args.nodes} nodes ...", flush=True)
        with LocalCluster(Path(tmp) / "cluster", nodes=args.nodes) as cluster:
            bench = Bench(cluster.kubeconfig, trees)
            bench.core.create_namespace({"metadata": {"name": NAMESPACE}})
            for round_ in range(args.starts):
                # Alternating which goes first: neither always follows the other's teardown.
                for version in versions if round_ % 2 == 0 else versions[::-1]:
                    starts[version].append(bench.start_once(version))
                    created, cpu, rss = starts[version][-1]
                    print(
                        f"start {round_ + 1} {version:6s}: created {created:.2f}s, "
                        f"CPU until ready {cpu:.2f}s, RSS {rss:.1f} MiB",
                        flush=True,
                    )
            for version in versions:
                memory[version] = bench.refreshes(version, args.refreshes)
                print(
                    f"{version}, metrics on: RSS {memory[version][0]:.1f} MiB at ready, "
                    f"{memory[version][1]:.1f} MiB after {args.refreshes} refreshes",
                    flush=True,
                )
        print(f"starting a local cluster with {args.puller_nodes} nodes ...", flush=True)
        with LocalCluster(Path(tmp) / "operator-cluster", nodes=args.puller_nodes) as cluster:
            bench = Bench(cluster.kubeconfig, trees)
            install_crd(bench.extensions)
            for version in versions:
                operator[version] = bench.operator(version, args.pullers, args.puller_nodes)
                print(f"{version}: operator RSS {operator[version]}", flush=True)

    print(f"\n=== results: before = {args.before}, after = the working tree ===")
    print(describe())
    rows: list[tuple[str, dict[str, list[float]], str, int]] = [
        (
            f"start -> DaemonSet created ({args.nodes} nodes)",
            {v: [s[0] for s in starts[v]] for v in versions},
            "s",
            2,
        ),
        ("CPU seconds until ready", {v: [s[1] for s in starts[v]] for v in versions}, "s", 2),
        (
            "RSS at ready (METRICS_PORT=0)",
            {v: [s[2] for s in starts[v]] for v in versions},
            "MiB",
            1,
        ),
        ("RSS at ready, metrics on", {v: [memory[v][0]] for v in versions}, "MiB", 1),
        (
            f"RSS after {args.refreshes} refreshes, metrics on",
            {v: [memory[v][1]] for v in versions},
            "MiB",
            1,
        ),
        ("operator RSS, 1 puller Ready", {v: [operator[v][0]] for v in versions}, "MiB", 1),
        (
            f"operator RSS, {args.pullers} pullers Ready",
            {v: [operator[v][1]] for v in versions},
            "MiB",
            1,
        ),
        (
            "operator, per additional puller",
            {v: [(operator[v][1] - operator[v][0]) / (args.pullers - 1)] for v in versions},
            "MiB",
            2,
        ),
    ]
    print(f"{'measure':45s} {'before':>24s} {'after':>24s} {'before/after':>13s}")
    for label, values, unit, digits in rows:
        before, after = values["before"], values["after"]
        ratio = statistics.median(before) / statistics.median(after)
        shown = [
            spread(v, unit, digits) if len(v) > 1 else f"{v[0]:.{digits}f} {unit}"
            for v in (before, after)
        ]
        print(f"{label:45s} {shown[0]:>24s} {shown[1]:>24s} {ratio:>12.2f}x")
    print(f"(median [range] over {args.starts} starts; one run each for the memory rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
