"""The value of holding images, measured on a real kubelet (prints figures; asserts nothing).

    .venv/bin/python benchmarks/bench_realnode.py                       # every figure, 3 runs
    .venv/bin/python benchmarks/bench_realnode.py --figures start --runs 1 --big 60:3 --small 20:1

Each figure starts a local cluster of its own (LocalCluster: the real control plane, real-0 as a
real kubelet + containerd node, and a local registry on 127.0.0.1), one at a time, in a temporary
directory that is removed at the end. The puller runs as `imagepuller run` (ControllerProcess,
LOG_FORMAT=json, the admin kubeconfig) in namespace "bench" (Pod Security `restricted`
enforced) with NODE_SELECTOR {"type": "real"}; KIP_IMAGE is an image made here from the node
stack's static busybox (/bin/sh, /bin/cp) and the static sleep (hack/build-sleep.sh) at
/bin/sleep, pulled onto the node before any figure. Images are made without an engine (crane):
layers of os.urandom data (incompressible, so the bytes on the wire are the image's size),
written as gzip files (stored blocks: gzip cannot shrink random data anyway) under the temporary
directory. Every image carries the static sleep at /bin/sleep and a unique nonce, so no layer is
shared with an earlier image. MB here is 10**6 bytes. Figures:

1. start: a workspace-like pod (one container, the image, `/bin/sleep 3600`,
   imagePullPolicy IfNotPresent, scheduled by the scheduler onto real-0 by nodeSelector, in
   namespace "workspaces"), create -> Running: the time from just before the POST until a pod
   watch opened beforehand delivers the pod with phase Running and its container running. The
   image is (a) cold: never pulled on the node, a new unique image for every run (never an
   image removed with rmi, whose snapshots or containerd's GC would distort the pull), or (b)
   held: in the puller's IMAGES, after its DaemonSet's pod on real-0 is Ready. The node reaches
   the registry through benchmarks/throttle_proxy.py, one shared byte rate for every response
   body at each of ``--rates`` MB/s (a stand-in for a remote registry; no latency added).
   Per image size (``--big``, ``--small``: MB:layers) and rate: cold median (min-max), held
   median (min-max), the ratio of the medians, the held image again with imagePullPolicy
   Always (a workspace whose tag is `latest`: the kubelet has the tag resolved through the proxy
   first), and the kubelet's own pull time of the cold runs (its `Pulled` event). Also the
   puller's time to hold both images (puller start to the `daemonset_ready` of its DaemonSet).
2. requests: the registry's requests (its own log) per refresh of the puller (two fresh images
   of 3 and 2 layers, by tag or by digest), with REFRESH_STRATEGY rolling and recreate; a
   refresh is forced by moving the DaemonSet's `imagepuller.io/refreshed-at` annotation to 2020
   (as tests/cluster/conftest.py make_refresh_due does) and counted once the controller logs it
   done (rolling: `refresh_complete`; recreate: `daemonset_ready` after the new
   `daemonset_created`). By kind (manifest HEAD/GET, blob GET, ...), for the first creation of
   the DaemonSet and as the mean per refresh over ``--runs`` refreshes.
3. gc: a cluster whose kubelet has `imageMaximumGCAge` (``--gc-max-age``) and
   `imageMinimumGCAge: 1s` (0s would mean its 2m default, which must be below the max age).
   The kubelet's image GC runs when it starts and then every 5 minutes (kubelet's
   ImageGCPeriod, not configurable); age-based removal waits until the kubelet has run for the
   max age. A held image (in the puller's IMAGES) and an unheld one (a
   workspace pod ran it and was deleted) are watched in `crictl images` every 2 s until the
   unheld one is gone or ``--gc-timeout`` seconds after the kubelet started: which images stay,
   when the unheld one went (after its pod was deleted; after the kubelet started), and the
   kubelet's own "Removing image to free bytes" lines.
4. cost: cluster start time (LocalCluster.start_seconds: start() until every node is Ready)
   and the summed RSS of its processes 5 s after start (cluster.processes), with
   ``--cost-nodes`` kwok nodes and real_nodes=0 vs 1, ``--runs`` times each, alternating; the
   extra seconds and MiB a real node costs, and the RSS of each extra component.

``--figures`` runs a subset (e.g. ``--figures start,requests``). On the 2-core machine other
work (tests running alongside) makes every time noisy: the load average is printed at the start
and end; compare ratios rather than absolute times.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubernetes import client, config, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

from benchmarks.machine import describe  # noqa: E402
from localcluster.binaries import find_node_stack  # noqa: E402
from localcluster.cluster import LocalCluster  # noqa: E402
from localcluster.realnode import RealNode  # noqa: E402
from localcluster.registry import (  # noqa: E402
    Registry,
    add_parent_directories,
    push_image,
    tar_layer,
)
from tests.controller_process import ControllerProcess  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

FIGURES = ("start", "requests", "gc", "cost")
MB = 10**6
NAME = "kubernetes-image-puller"
NAMESPACE = "bench"
WORKSPACES = "workspaces"
SELECTOR = f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=image-cache"
REFRESH_ANNOTATION = "imagepuller.io/refreshed-at"
PROXY_SCRIPT = Path(__file__).resolve().parent / "throttle_proxy.py"


def log(message: str) -> None:
    """Progress, on standard error (the figures go to standard output)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """'median (min-max)', or the one value."""
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    med, low, high = statistics.median(values), min(values), max(values)
    return f"{fmt.format(med)} ({fmt.format(low)}-{fmt.format(high)})"


def go_duration(text: str) -> float:
    """Seconds of a Go duration string such as 21.35s, 1m2.5s, 512ms or 830.2µs."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(h|ms|us|µs|ns|m|s)", text):
        total += float(number) * units[unit]
    return total


# --- images --------------------------------------------------------------------------------------


class RandomReader:
    """``size`` bytes of os.urandom, read in pieces (tarfile copies from it)."""

    def __init__(self, size: int):
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return os.urandom(n) if n else b""


def write_layer(path: Path, files: dict[str, int | Path]) -> None:
    """A gzip'd tar layer at ``path``: each file either ``size`` random bytes or a local file,
    with its parent directories; streamed, never whole in memory. Level 0 (stored blocks):
    random data does not compress, so a real gzip would not be smaller either."""
    with (
        gzip.GzipFile(path, "wb", compresslevel=0, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        directories: set[str] = set()
        for name, content in files.items():
            add_parent_directories(tar, name, directories)
            info = tarfile.TarInfo(name.strip("/"))
            if isinstance(content, Path):
                info.size, info.mode = content.stat().st_size, 0o755
                with content.open("rb") as source:
                    tar.addfile(info, source)
            else:
                info.size, info.mode = content, 0o644
                tar.addfile(info, RandomReader(content))


@dataclass
class Image:
    repo: str  # path in the registry, e.g. "bench/cold-big-1a2b:1"
    digest: str
    size: int  # bytes of data (the random files)
    layers: int

    def ref(self, host: str) -> str:
        return f"{host}/{self.repo}"

    def pinned(self, host: str) -> str:
        return f"{host}/{self.repo.rsplit(':', 1)[0]}@{self.digest}"


class Images:
    """Makes images on the cluster's registry: random data, the static sleep, a nonce each."""

    def __init__(self, registry: Registry, crane: Path, sleep: Path, tmp: Path):
        self.registry, self.crane, self.sleep, self.tmp = registry, crane, sleep, tmp

    def random(self, name: str, size: int, layers: int) -> Image:
        nonce = secrets.token_hex(4)
        repo = f"bench/{name}-{nonce}:1"
        directory = Path(tempfile.mkdtemp(prefix="layers-", dir=self.tmp))
        try:
            paths = []
            per_layer = size // layers
            for index in range(layers):
                files: dict[str, int | Path] = {f"data/{nonce}-{index}.bin": per_layer}
                if index == 0:
                    files["bin/sleep"] = self.sleep
                paths.append(directory / f"layer{index}.tar.gz")
                write_layer(paths[-1], files)
            digest = push_image(self.crane, f"{self.registry.host}/{repo}", list(paths))
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return Image(repo, digest, per_layer * layers, layers)

    def kip(self, busybox: Path) -> str:
        ref = f"{self.registry.host}/bench/kip:1"
        layer = tar_layer(
            {"bin/busybox": busybox, "bin/sh": busybox, "bin/cp": busybox, "bin/sleep": self.sleep}
        )
        push_image(self.crane, ref, [layer], user="65532:65532")
        return ref


def build_sleep(tmp: Path) -> Path:
    out = tmp / "sleep"
    subprocess.run(["bash", str(ROOT / "hack" / "build-sleep.sh"), str(out)], check=True)
    return out


# --- the throttling proxy ------------------------------------------------------------------------


@contextlib.contextmanager
def throttle_proxy(upstream: str, rate_mbps: float, log_path: Path) -> Iterator[str]:
    """throttle_proxy.py as a process of ours; yields its host:port; stopped by its pid."""
    with log_path.open("ab") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(PROXY_SCRIPT), "--upstream", upstream, "--rate-mbps",
             str(rate_mbps)],
            stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        if len(line) != 2 or line[0] != "listening":
            raise RuntimeError(f"throttle proxy did not start; see {log_path}")
        yield line[1]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()


# --- the API -------------------------------------------------------------------------------------


def pod_running(pod: Any) -> bool:
    status = pod.status
    if status is None or status.phase != "Running":
        return False
    containers = status.container_statuses or []
    return bool(containers) and all(c.state and c.state.running for c in containers)


class RunningWatch:
    """A pod watch on one namespace, opened before the pods are made: the monotonic time each
    pod was first delivered Running (phase Running, every container running)."""

    def __init__(self, core: client.CoreV1Api, namespace: str):
        self.core, self.namespace = core, namespace
        self.running: dict[str, float] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        listed = core.list_namespaced_pod(namespace)
        self._rv = listed.metadata.resource_version
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._watch = watch.Watch()
            try:
                for event in self._watch.stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    resource_version=self._rv,
                    timeout_seconds=60,
                ):
                    received = time.monotonic()
                    pod = event["object"]
                    self._rv = pod.metadata.resource_version
                    name = pod.metadata.name
                    if event["type"] != "DELETED" and pod_running(pod):
                        with self._changed:
                            self.running.setdefault(name, received)
                            self._changed.notify_all()
            except ApiException as exc:
                if exc.status == 410:  # expired: start again from now
                    self._rv = self.core.list_namespaced_pod(
                        self.namespace
                    ).metadata.resource_version
                elif not self._stop.is_set():
                    time.sleep(0.5)
            except Exception:  # noqa: BLE001 - a dropped connection: watch again
                if not self._stop.is_set():
                    time.sleep(0.5)

    def wait(self, name: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with self._changed:
            while name not in self.running:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"pod {name} not Running within {timeout:.0f}s")
                self._changed.wait(left)
            return self.running[name]

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()


def create_namespace(core: client.CoreV1Api, name: str, labels: dict[str, str]) -> None:
    core.create_namespace({"metadata": {"name": name, "labels": labels}})
    # Pods can be created once the namespace's default ServiceAccount exists.
    wait_until(
        lambda: core.list_namespaced_service_account(name).items,
        60,
        f"the default ServiceAccount of {name}",
    )


def workspace_pod(name: str, image: str, policy: str = "IfNotPresent") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"type": "real"},
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "workspace",
                    "image": image,
                    "command": ["/bin/sleep", "3600"],
                    "imagePullPolicy": policy,
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def pod_gone(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def delete_pod(core: client.CoreV1Api, namespace: str, name: str, timeout: float = 90) -> None:
    """Delete and wait until the kubelet has stopped it and the object is gone."""
    with contextlib.suppress(ApiException):
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=1)
    wait_until(lambda: pod_gone(core, namespace, name), timeout, f"pod {name} to be gone", 0.25)


def pull_seconds(core: client.CoreV1Api, namespace: str, pod: str) -> float | None:
    """The kubelet's own pull time of the pod's image, from its `Pulled` event."""
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod}")
    for event in events.items:
        if event.reason == "Pulled" and event.message and " in " in event.message:
            match = re.search(r"in ([\d.hmsuµn]+) ", event.message)
            if match:
                return go_duration(match[1])
    return None


@dataclass
class Start:
    seconds: float
    pulled: float | None  # the kubelet's pull time, if it pulled


class Bench:
    """One cluster with a real node, and what every figure needs on it."""

    def __init__(self, cluster: LocalCluster, stack: dict[str, Path], tmp: Path):
        self.cluster = cluster
        self.stack = stack
        self.tmp = tmp
        assert cluster.registry is not None
        self.registry: Registry = cluster.registry
        self.node: RealNode = cluster.real[0]
        self.api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        self.core = client.CoreV1Api(self.api_client)
        self.apps = client.AppsV1Api(self.api_client)
        self.images = Images(self.registry, stack["crane"], build_sleep(tmp), tmp)
        create_namespace(self.core, NAMESPACE, {"pod-security.kubernetes.io/enforce": "restricted"})
        create_namespace(self.core, WORKSPACES, {})
        self.kip = self.images.kip(stack["busybox"])
        # The pause image (pulled at the first pod sandbox) and KIP_IMAGE, before any figure:
        # neither belongs to what a figure counts.
        self.node.crictl("pull", self.node.pause_image)
        self.node.crictl("pull", self.kip)
        self.watch = RunningWatch(self.core, WORKSPACES)

    def close(self) -> None:
        self.watch.stop()
        self.api_client.close()

    def start_pod(self, image: str, policy: str = "IfNotPresent", timeout: float = 600) -> Start:
        name = f"ws-{secrets.token_hex(4)}"
        began = time.monotonic()
        self.core.create_namespaced_pod(WORKSPACES, workspace_pod(name, image, policy))
        running = self.watch.wait(name, timeout)
        pulled = pull_seconds(self.core, WORKSPACES, name)
        delete_pod(self.core, WORKSPACES, name)
        return Start(running - began, pulled)

    # The puller ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def puller(self, images: str, **settings: str) -> Iterator[ControllerProcess]:
        """`imagepuller run` holding ``images`` on the real node; on the way out SIGTERM (it
        deletes its DaemonSet, having no owner) and wait until its pods are gone."""
        env = {
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "NAMESPACE": NAMESPACE,
            "IMAGES": images,
            "KIP_IMAGE": self.kip,
            "NODE_SELECTOR": json.dumps({"type": "real"}),
            "CACHING_INTERVAL_HOURS": "24",
            "READY_TIMEOUT": "10m",
            "LOG_FORMAT": "json",
            **settings,
        }
        controller = ControllerProcess(env, cwd=str(ROOT))
        try:
            yield controller
        finally:
            if controller.process.poll() is None:
                with contextlib.suppress(AssertionError):
                    controller.stop(timeout=60)
            wait_until(
                lambda: not self.core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR).items,
                120,
                "the puller's pods to be gone",
                0.5,
            )

    def holder_ready(self) -> bool:
        """The DaemonSet's pod on the real node is Ready (and not being deleted)."""
        for pod in self.core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR).items:
            if pod.spec.node_name != self.node.name or pod.metadata.deletion_timestamp:
                continue
            conditions = (pod.status and pod.status.conditions) or []
            if any(c.type == "Ready" and c.status == "True" for c in conditions):
                return True
        return False

    def wait_held(self, controller: ControllerProcess, timeout: float = 900) -> dict[str, Any]:
        event = controller.wait_for("daemonset_ready", timeout, where=lambda e: e["desired"] == 1)
        wait_until(self.holder_ready, 60, "the holder pod on the real node to be Ready")
        return event

    def node_images(self) -> dict[str, dict[str, Any]]:
        """{repo:tag: image} of `crictl images`."""
        listed = json.loads(self.node.crictl("images", "-o", "json"))
        return {tag: image for image in listed.get("images") or [] for tag in image["repoTags"]}


@contextlib.contextmanager
def real_cluster(
    tmp: Path, name: str, stack: dict[str, Path], kubelet_config: dict[str, Any] | None = None
) -> Iterator[Bench]:
    workdir = tmp / name
    cluster = LocalCluster(workdir, nodes=0, real_nodes=1, kubelet_config=kubelet_config)
    bench: Bench | None = None
    try:
        log(f"starting cluster {name}")
        cluster.start(timeout=180)
        bench = Bench(cluster, stack, tmp)
        yield bench
    finally:
        if bench is not None:
            bench.close()
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# --- figure 1: pod start, cold vs held -----------------------------------------------------------


@dataclass
class StartRow:
    size: str
    rate: float
    cold: list[Start] = field(default_factory=list)
    held: list[Start] = field(default_factory=list)
    held_always: list[Start] = field(default_factory=list)  # imagePullPolicy Always
    hold_seconds: float | None = None  # the puller: start to daemonset_ready (both images)


def parse_size(text: str) -> tuple[int, int]:
    megabytes, _, layers = text.partition(":")
    return int(float(megabytes) * MB), int(layers or 1)


def measure_start(bench: Bench, args: argparse.Namespace) -> list[StartRow]:
    sizes = {"big": parse_size(args.big), "small": parse_size(args.small)}
    rows: list[StartRow] = []
    for rate in args.rates:
        with throttle_proxy(bench.registry.host, rate, bench.tmp / "proxy.log") as proxy:
            bench.node.trust_http_registry(proxy)
            log(f"{rate:g} MB/s: making the held images")
            held = {k: bench.images.random(f"held-{k}", *v) for k, v in sizes.items()}
            log(f"{rate:g} MB/s: making {args.runs} cold images of each size")
            cold = {
                k: [bench.images.random(f"cold-{k}", *v) for _ in range(args.runs)]
                for k, v in sizes.items()
            }
            os.sync()  # the registry's writes on disk now, not during a timed pull
            by_size = {k: StartRow(k, rate) for k in sizes}
            images = "".join(f"{k}={image.ref(proxy)};" for k, image in held.items())
            log(f"{rate:g} MB/s: the puller pulls the held images")
            began = time.monotonic()
            with bench.puller(images) as controller:
                bench.wait_held(controller)
                hold = time.monotonic() - began
                for row in by_size.values():
                    row.hold_seconds = hold
                for run in range(args.runs):
                    for k, image in held.items():
                        row = by_size[k]
                        row.held.append(bench.start_pod(image.ref(proxy)))
                        row.held_always.append(bench.start_pod(image.ref(proxy), "Always"))
                        log(
                            f"  held {k} run {run + 1}: {row.held[-1].seconds:.2f} s, "
                            f"with Always {row.held_always[-1].seconds:.2f} s"
                        )
            for run in range(args.runs):
                for k in sizes:
                    start = bench.start_pod(cold[k][run].ref(proxy))
                    by_size[k].cold.append(start)
                    log(f"  cold {k} run {run + 1}: {start.seconds:.2f} s")
            rows += by_size.values()
    return rows


def print_start(rows: list[StartRow], args: argparse.Namespace) -> None:
    sizes = {"big": parse_size(args.big), "small": parse_size(args.small)}
    print(
        "workspace pod create -> Running, seconds, median (min-max) of "
        f"{args.runs} run(s); cold = never pulled, held = held by the puller:"
    )
    header = (
        "image", "rate", "cold", "held", "cold/held", "held, Always", "kubelet pull (cold)",
        "puller held",
    )  # fmt: skip
    lines = [header]
    for row in rows:
        size, layers = sizes[row.size]
        cold = [s.seconds for s in row.cold]
        held = [s.seconds for s in row.held]
        pulls = [s.pulled for s in row.cold if s.pulled is not None]
        ratio = statistics.median(cold) / statistics.median(held) if cold and held else None
        lines.append(
            (
                f"{row.size} {size / MB:.0f} MB / {layers} layer{'s' if layers > 1 else ''}",
                f"{row.rate:g} MB/s",
                spread(cold),
                spread(held),
                (f"{ratio:.1f}x" if ratio < 10 else f"{ratio:.0f}x") if ratio else "-",
                spread([s.seconds for s in row.held_always]),
                spread(pulls),
                f"{row.hold_seconds:.1f} s" if row.hold_seconds else "-",
            )
        )
    print_table(lines)
    print(
        "  cold/held = ratio of the medians; held, Always = the same held image with "
        "imagePullPolicy Always (the kubelet resolves the tag through the proxy first);"
    )
    print(
        "  kubelet pull = the kubelet's `Pulled` event of the cold runs; puller held = puller "
        "start until its DaemonSet is ready holding both images of that rate (pulled serially)."
    )


def print_table(lines: Sequence[Sequence[str]]) -> None:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for index, line in enumerate(lines):
        print("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if index == 0:
            print("  " + "  ".join("-" * w for w in widths))


# --- figure 2: registry requests per refresh -----------------------------------------------------


def request_kind(request: dict[str, Any]) -> str:
    uri, method = request["uri"].split("?", 1)[0], request["method"]
    if uri.rstrip("/") == "/v2":
        return f"ping {method}"
    match = re.match(r"^/v2/.+/(manifests|blobs)/(.+)$", uri)
    if not match:
        return f"other {method}"
    kind = "manifest" if match[1] == "manifests" else "blob"
    if kind == "manifest":
        by = "digest" if match[2].startswith("sha256:") else "tag"
        return f"manifest {method} by {by}"
    return f"blob {method}"


def count_kinds(requests: list[dict[str, Any]]) -> Counter[str]:
    return Counter(request_kind(r) for r in requests)


@dataclass
class RequestRow:
    strategy: str
    refs: str
    created: Counter[str]
    refreshes: list[Counter[str]]
    seconds: list[float]


def force_refresh(bench: Bench) -> None:
    bench.apps.patch_namespaced_daemon_set(
        NAME,
        NAMESPACE,
        {"metadata": {"annotations": {REFRESH_ANNOTATION: "2020-01-01T00:00:00Z"}}},
    )


def measure_requests(bench: Bench, args: argparse.Namespace) -> list[RequestRow]:
    rows = []
    host = bench.registry.host
    for strategy in ("rolling", "recreate"):
        for refs in ("tag", "digest"):
            a = bench.images.random("req-a", 3 * MB, 3)
            b = bench.images.random("req-b", 2 * MB, 2)
            if refs == "tag":
                images = f"a={a.ref(host)};b={b.ref(host)};"
            else:
                images = f"a={a.pinned(host)};b={b.pinned(host)};"
            log(f"requests: {strategy}, by {refs}")
            mark = bench.registry.mark()
            with bench.puller(images, REFRESH_STRATEGY=strategy) as controller:
                ready = bench.wait_held(controller)
                time.sleep(1)  # the log line of the last request is written after the answer
                created = count_kinds(bench.registry.requests(mark))
                row = RequestRow(strategy, refs, created, [], [])
                last = ready
                for _ in range(args.runs):
                    mark = bench.registry.mark()
                    began = time.monotonic()
                    force_refresh(bench)
                    due = controller.wait_for("refresh_due", 120, where=after(last))
                    if strategy == "rolling":
                        last = controller.wait_for("refresh_complete", 600, where=after(due))
                    else:
                        made = controller.wait_for("daemonset_created", 600, where=after(due))
                        last = controller.wait_for(
                            "daemonset_ready",
                            600,
                            where=after(made),
                        )
                    row.seconds.append(time.monotonic() - began)
                    wait_until(bench.holder_ready, 60, "the holder pod to be Ready")
                    time.sleep(1)
                    row.refreshes.append(count_kinds(bench.registry.requests(mark)))
            rows.append(row)
    return rows


def after(event: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["_received"] > event["_received"]


def describe_counts(counts: Counter[str] | dict[str, float], per: float = 1.0) -> str:
    if not counts:
        return "none"
    parts = []
    for kind in sorted(counts):
        value = counts[kind] / per
        parts.append(f"{kind} {value:g}" if value != int(value) else f"{kind} {int(value)}")
    return ", ".join(parts)


def print_requests(rows: list[RequestRow], args: argparse.Namespace) -> None:
    print(
        "registry requests (the registry's log), two fresh images of 3 and 2 layers on one real "
        f"node, per refresh = mean of {args.runs} forced refresh(es):"
    )
    lines = [("strategy", "images by", "first create", "per refresh", "refresh took, s")]
    for row in rows:
        total: Counter[str] = Counter()
        for counts in row.refreshes:
            total.update(counts)
        per = describe_counts(total, per=len(row.refreshes)) if row.refreshes else "-"
        lines.append(
            (row.strategy, row.refs, describe_counts(row.created), per, spread(row.seconds))
        )
    print_table(lines)
    print(
        "  a refresh with a digest-pinned image (imagePullPolicy IfNotPresent) asks the registry "
        "nothing; by tag (Always) the kubelet has containerd resolve the tag again."
    )


# --- figure 3: the kubelet's image GC ------------------------------------------------------------


@dataclass
class GcResult:
    max_age: str
    held: str
    unheld: str
    unheld_deleted_after_start: float  # pod deleted, seconds after the kubelet started
    gone_after_start: float | None  # unheld image gone, seconds after the kubelet started
    present: dict[str, bool]  # ref -> still in crictl images at the end
    removals: list[tuple[float, str, str]]  # (seconds after kubelet start, image, size)


KUBELET_TIME = re.compile(r"^[IWE](\d{4}) (\d{2}):(\d{2}):(\d{2})\.(\d+)")


def kubelet_removals(node: RealNode, names: dict[str, str], started_wall: float) -> list:
    """(seconds after the kubelet started, image, size) of its "Removing image" lines."""
    out = []
    text = (node.logs / "kubelet.log").read_text(errors="replace")
    for line in text.splitlines():
        if "Removing image to free bytes" not in line:
            continue
        match = KUBELET_TIME.match(line)
        at = None
        if match:
            day = time.strftime("%Y", time.gmtime(started_wall)) + match[1]
            clock = time.strptime(day + f"{match[2]}{match[3]}{match[4]}", "%Y%m%d%H%M%S")
            at = time.mktime(clock) + float("0." + match[5]) - started_wall  # klog: local time
        image_id = re.search(r'imageID="([^"]+)"', line)
        size = re.search(r"size=(\d+)", line)
        ident = image_id[1] if image_id else "?"
        out.append(
            (
                at if at is not None else float("nan"),
                names.get(ident, ident[:19]),
                f"{int(size[1]) / MB:.1f} MB" if size else "?",
            )
        )
    return out


def measure_gc(tmp: Path, stack: dict[str, Path], args: argparse.Namespace) -> GcResult:
    kubelet_config = {"imageMaximumGCAge": args.gc_max_age, "imageMinimumGCAge": "1s"}
    with real_cluster(tmp, "gc", stack, kubelet_config) as bench:
        kubelet = bench.node.kubelet
        started = kubelet.started_at or time.monotonic()
        started_wall = time.time() - (time.monotonic() - started)
        host = bench.registry.host
        held = bench.images.random("gc-held", 20 * MB, 2).ref(host)
        unheld = bench.images.random("gc-unheld", 20 * MB, 2).ref(host)
        with bench.puller(f"held={held};") as controller:
            bench.wait_held(controller)
            log("gc: running and deleting a workspace pod of the unheld image")
            bench.start_pod(unheld)
            deleted = time.monotonic() - started
            ids = {image["id"]: tag for tag, image in bench.node_images().items()}
            log(
                f"gc: waiting for the kubelet's image GC (period 5 min from its start, "
                f"up to {args.gc_timeout:.0f} s after it)"
            )
            gone = None
            while time.monotonic() - started < args.gc_timeout:
                present = bench.node_images()
                if unheld not in present:
                    gone = time.monotonic() - started
                    break
                time.sleep(2)
            time.sleep(3)  # anything else the same GC pass removes
            present = bench.node_images()
            refs = {
                "held": held,
                "unheld": unheld,
                "KIP_IMAGE": bench.kip,
                "pause": bench.node.pause_image,
            }
            return GcResult(
                args.gc_max_age,
                held,
                unheld,
                deleted,
                gone,
                {label: ref in present for label, ref in refs.items()},
                kubelet_removals(bench.node, ids, started_wall),
            )


def print_gc(result: GcResult) -> None:
    print(
        f"the kubelet's image GC, imageMaximumGCAge {result.max_age} (imageMinimumGCAge 1s; "
        "GC passes at kubelet start + k x 5 min):"
    )
    print(
        f"  unheld image's pod deleted at kubelet start + {result.unheld_deleted_after_start:.0f} s"
    )
    if result.gone_after_start is None:
        print("  unheld image NOT removed within the wait")
    else:
        print(
            f"  unheld image gone at kubelet start + {result.gone_after_start:.0f} s, "
            f"{result.gone_after_start - result.unheld_deleted_after_start:.0f} s after its pod "
            "was deleted"
        )
    for label, present in result.present.items():
        print(
            f"  {label:9} image in crictl images after GC: {'yes' if present else 'no (removed)'}"
        )
    if result.removals:
        print("  the kubelet's log, 'Removing image to free bytes':")
        for at, image, size in result.removals:
            print(f"    at start + {at:.0f} s: {image} ({size})")
    else:
        print("  the kubelet's log: no 'Removing image to free bytes' line")


# --- figure 4: what a real node costs ------------------------------------------------------------


@dataclass
class Cost:
    real_nodes: int
    seconds: float
    rss: dict[str, float]  # component -> MiB


def measure_cost(tmp: Path, args: argparse.Namespace) -> list[Cost]:
    out = []
    for run in range(args.runs):
        for real in (0, 1):
            workdir = tmp / f"cost-{real}-{run}"
            cluster = LocalCluster(workdir, nodes=args.cost_nodes, real_nodes=real)
            try:
                log(f"cost: real_nodes={real}, run {run + 1}")
                cluster.start(timeout=180)
                time.sleep(5)
                rss = {
                    name: float(p["rss_mib"])
                    for name, p in cluster.processes.items()
                    if p["rss_mib"] is not None
                }
                out.append(Cost(real, cluster.start_seconds or 0.0, rss))
            finally:
                cluster.stop()
                shutil.rmtree(workdir, ignore_errors=True)
    return out


def print_cost(costs: list[Cost], args: argparse.Namespace) -> None:
    print(
        f"cluster cost, {args.cost_nodes} kwok nodes, real_nodes 0 vs 1, {args.runs} start(s) "
        "each: start() until all nodes Ready; RSS summed over the cluster's processes 5 s later:"
    )
    by = {real: [c for c in costs if c.real_nodes == real] for real in (0, 1)}
    lines = [("real nodes", "start, s", "RSS total, MiB")]
    for real, items in by.items():
        lines.append(
            (
                str(real),
                spread([c.seconds for c in items]),
                spread([sum(c.rss.values()) for c in items], "{:.0f}"),
            )
        )
    print_table(lines)
    if by[0] and by[1]:
        extra_s = statistics.median(c.seconds for c in by[1]) - statistics.median(
            c.seconds for c in by[0]
        )
        extra_mib = statistics.median(sum(c.rss.values()) for c in by[1]) - statistics.median(
            sum(c.rss.values()) for c in by[0]
        )
        print(f"  a real node costs {extra_s:+.1f} s of start and {extra_mib:+.0f} MiB (medians)")
        extra = sorted(set(by[1][0].rss) - set(by[0][0].rss))
        parts = [
            f"{name} {statistics.median(c.rss.get(name, 0.0) for c in by[1]):.0f}" for name in extra
        ]
        own = sum(statistics.median(c.rss.get(name, 0.0) for c in by[1]) for name in extra)
        print(
            "  RSS of the real node's own components, MiB (median): "
            + ", ".join(parts)
            + f"; together {own:.0f}, the rest ({extra_mib - own:+.0f}) is the other processes"
        )


# --- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--figures", default=",".join(FIGURES), help="subset of " + ",".join(FIGURES)
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rates", default="25,100", help="MB/s of the throttling proxy")
    parser.add_argument("--big", default="540:6", help="MB:layers of the big image")
    parser.add_argument("--small", default="150:2", help="MB:layers of the small image")
    parser.add_argument("--gc-max-age", default="30s", help="the kubelet's imageMaximumGCAge")
    parser.add_argument("--gc-timeout", type=float, default=420.0, help="s after kubelet start")
    parser.add_argument("--cost-nodes", type=int, default=3, help="kwok nodes in the cost figure")
    args = parser.parse_args(argv)
    figures = [f.strip() for f in args.figures.split(",") if f.strip()]
    unknown = set(figures) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figures {sorted(unknown)}; choose from {','.join(FIGURES)}")
    args.rates = [float(r) for r in args.rates.split(",")]

    print(describe())
    print(f"load average at start: {loadavg()}", flush=True)
    began = time.monotonic()
    stack = find_node_stack()
    tmp = Path(tempfile.mkdtemp(prefix="bench-realnode-", dir="/tmp"))
    try:
        if "start" in figures or "requests" in figures:
            with real_cluster(tmp, "main", stack) as bench:
                if "start" in figures:
                    rows = measure_start(bench, args)
                    print()
                    print_start(rows, args)
                if "requests" in figures:
                    requests = measure_requests(bench, args)
                    print()
                    print_requests(requests, args)
                sys.stdout.flush()
        if "gc" in figures:
            result = measure_gc(tmp, stack, args)
            print()
            print_gc(result)
            sys.stdout.flush()
        if "cost" in figures:
            costs = measure_cost(tmp, args)
            print()
            print_cost(costs, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"load average at end: {loadavg()}; the benchmark took {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
