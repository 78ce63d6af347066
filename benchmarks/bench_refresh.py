"""Refresh benchmark on the local control plane (prints figures; asserts nothing).

    .venv/bin/python benchmarks/bench_refresh.py --nodes 50,200 --refreshes 100

One local cluster per node count in ``--nodes``, started and torn down here (everything on
127.0.0.1, namespace "bench"); the controller runs as `imagepuller run` (ControllerProcess,
LOG_FORMAT=json) with the admin kubeconfig. Figures:

1. Holding during a refresh, rolling vs recreate, on every node count: the fraction of the N
   nodes with a Ready, not-deleting puller pod (tests/holding.py, a pod list every 100 ms) from
   the controller's `refresh_due` until the refresh is over (`refresh_complete` for rolling;
   for recreate the `daemonset_ready` after the `daemonset_created` that follows
   `refresh_due`): minimum, mean, number of samples, mean sample interval, refresh duration.
2. ConfigMap edit -> DaemonSet template updated (smallest node count): the controller watches
   ConfigMap "bench-settings"; ``--edits`` times CACHING_MEMORY_LIMIT flips between 20Mi and
   21Mi, and a separate 20 ms poll of the DaemonSet times until its first container's memory
   limit changes (from just before the PATCH). Median and worst; also edit -> `config_applied`.
3. API requests by verb and resource (smallest node count), from the API server's
   `apiserver_request_total` (which has no client label: counts are taken by difference):
   - background: a window with no controller and no DaemonSet (kube-controller-manager,
     kube-scheduler and kwok only), as a rate, subtracted from every other window;
   - per rolling refresh: ``--metric-refreshes`` refreshes by the controller, then the same
     number of identical template changes made by this script with the controller killed
     (its own requests, counted here, taken out). The first is what a refresh costs the
     cluster, the second what the cluster does anyway for that rollout, their difference the
     controller's own requests;
   - per idle hour: CACHING_INTERVAL_HOURS=1, a ``--idle-seconds`` window, scaled to 1 h.
   Only daemonsets, pods, events, configmaps and deployments (with subresources), non-zero rows.
4. Controller RSS over ``--refreshes`` rolling refreshes at the largest node count with
   CACHING_INTERVAL_HOURS=0.001: after refresh 1, 10, 25, 50, 75 and the last (sampled when
   the next one starts), and the growth from 10 to the last.

``--figures`` runs a subset (e.g. ``--figures holding``). At 200 nodes a 100 ms pod list may
take longer than 100 ms: the real sample count and interval are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubernetes import config  # noqa: E402

from benchmarks.machine import describe  # noqa: E402
from imagepuller.apitime import format_time  # noqa: E402
from imagepuller.daemonset import refresh_patch  # noqa: E402
from imagepuller.objects import rollout  # noqa: E402
from localcluster.cluster import LocalCluster  # noqa: E402
from localcluster.process import rss_mib  # noqa: E402
from tests.controller_process import ControllerProcess  # noqa: E402
from tests.holding import HoldingSampler  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

IMAGES = "java=quay.io/eclipse/che-java17-maven:next;node=docker.io/library/node:20-alpine;"
NAME = "kubernetes-image-puller"
NAMESPACE = "bench"
CONFIGMAP = "bench-settings"
SELECTOR = f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=image-cache"
FIGURES = ("holding", "edits", "requests", "rss")
RESOURCES = ("daemonsets", "pods", "events", "configmaps", "deployments")
RSS_CHECKPOINTS = (1, 10, 25, 50, 75)

Key = tuple[str, str]  # (verb, resource[/subresource]) of apiserver_request_total
Counts = dict[Key, float]


# --- the API server's metrics (pure) ---------------------------------------------------------

_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_samples(text: str, metric: str) -> list[tuple[dict[str, str], float]]:
    """The samples of ``metric`` in Prometheus text format: (labels, value) pairs."""
    samples = []
    for line in text.splitlines():
        if not line.startswith(metric):
            continue  # comments (# HELP, # TYPE) and other metrics
        match = _SAMPLE.match(line)
        if match is None or match["name"] != metric:
            continue
        labels = {k: _unescape(v) for k, v in _LABEL.findall(match["labels"] or "")}
        samples.append((labels, float(match["value"])))
    return samples


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


def request_counts(text: str) -> Counts:
    """apiserver_request_total summed by (verb, resource[/subresource]) over every other label
    (code, group, version, scope, component), for RESOURCES only; dry runs apart."""
    counts: Counts = {}
    for labels, value in parse_samples(text, "apiserver_request_total"):
        resource = labels.get("resource", "")
        if resource not in RESOURCES:
            continue
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        verb = labels.get("verb", "?") + (" (dry run)" if labels.get("dry_run") else "")
        counts[(verb, resource)] = counts.get((verb, resource), 0.0) + value
    return counts


def combine(*terms: tuple[float, Counts]) -> Counts:
    """sum(factor * counts) over ``terms``, key by key."""
    result: Counts = {}
    for factor, counts in terms:
        for key, value in counts.items():
            result[key] = result.get(key, 0.0) + factor * value
    return result


# --- talking to the API server ---------------------------------------------------------------


class Api:
    """Plain JSON requests with the admin token over one kept-alive connection. Counts its
    own requests by (verb, resource), to take them out of the API server's counts."""

    def __init__(self, cluster: LocalCluster):
        self.server = cluster.server
        self.pool = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(cluster.ca_file),
            timeout=urllib3.Timeout(connect=5, read=60),
            retries=False,
        )
        self.headers = {"Authorization": f"Bearer {cluster.token}"}
        self.own: Counts = {}

    def call(
        self, method: str, path: str, body: Any = None, *, key: Key | None = None, ctype: str = ""
    ) -> tuple[int, Any]:
        if key is not None:
            self.own[key] = self.own.get(key, 0.0) + 1
        headers = {**self.headers, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = ctype or "application/json"
        response = self.pool.request(method, self.server + path, body=data, headers=headers)
        payload = json.loads(response.data) if response.data else None
        if response.status >= 400 and response.status != 404:
            raise RuntimeError(f"{method} {path}: HTTP {response.status}: {payload}")
        return response.status, payload

    def metrics(self) -> tuple[str, float]:
        """The API server's /metrics text and when it was read (monotonic)."""
        response = self.pool.request("GET", self.server + "/metrics", headers=self.headers)
        if response.status != 200:
            raise RuntimeError(f"GET /metrics: HTTP {response.status}: {response.data[:300]!r}")
        return response.data.decode(), time.monotonic()

    # Objects of the benchmark ----------------------------------------------------------------

    def create_namespace(self) -> None:
        self.call("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})

    def get_daemonset(self) -> dict[str, Any] | None:
        path = f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets/{NAME}"
        status, body = self.call("GET", path, key=("GET", "daemonsets"))
        return None if status == 404 else body

    def patch_daemonset(self, patch: dict[str, Any]) -> None:
        path = f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets/{NAME}"
        ctype = "application/merge-patch+json"
        status, body = self.call("PATCH", path, patch, key=("PATCH", "daemonsets"), ctype=ctype)
        if status == 404:
            raise RuntimeError(f"PATCH {path}: the DaemonSet is gone")

    def delete_daemonset(self) -> None:
        path = f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets/{NAME}"
        body = {"propagationPolicy": "Background"}
        self.call("DELETE", path, body, key=("DELETE", "daemonsets"))

    def puller_pods(self) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={SELECTOR}"
        return list(self.call("GET", path, key=("LIST", "pods"))[1]["items"])

    def put_configmap(self, data: dict[str, str]) -> None:
        """Create the benchmark's ConfigMap, or replace its data."""
        path = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
        body = {"metadata": {"name": CONFIGMAP}, "data": data}
        if self.call("GET", f"{path}/{CONFIGMAP}", key=("GET", "configmaps"))[0] == 404:
            self.call("POST", path, body, key=("POST", "configmaps"))
        else:
            self.call("PUT", f"{path}/{CONFIGMAP}", body, key=("PUT", "configmaps"))

    def patch_configmap(self, data: dict[str, str]) -> None:
        path = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{CONFIGMAP}"
        ctype = "application/merge-patch+json"
        self.call("PATCH", path, {"data": data}, key=("PATCH", "configmaps"), ctype=ctype)


def rollout_done(daemonset: dict[str, Any] | None, nodes: int) -> bool:
    """Every one of ``nodes`` runs an available pod of the DaemonSet's current template."""
    if daemonset is None:
        return False
    complete, _, desired = rollout(daemonset)
    return complete and desired == nodes


def memory_limit(daemonset: dict[str, Any] | None) -> str | None:
    if daemonset is None:
        return None
    container = daemonset["spec"]["template"]["spec"]["containers"][0]
    return (container.get("resources") or {}).get("limits", {}).get("memory")


def wait_puller_gone(api: Api, timeout: float) -> None:
    """Until the DaemonSet and every pod of it are gone from the API."""
    wait_until(
        lambda: api.get_daemonset() is None and not api.puller_pods(),
        timeout,
        f"DaemonSet {NAMESPACE}/{NAME} and its pods to be gone",
        interval=0.5,
    )


# --- the controller --------------------------------------------------------------------------


def controller_env(
    cluster: LocalCluster, args: argparse.Namespace, **settings: str
) -> dict[str, str]:
    return {
        "KUBECONFIG": str(cluster.kubeconfig),
        "NAMESPACE": NAMESPACE,
        "IMAGES": IMAGES,
        "REFRESH_MAX_SURGE": args.max_surge,
        "READY_TIMEOUT": f"{int(args.timeout)}s",
        "LOG_FORMAT": "json",
        **settings,
    }


@contextlib.contextmanager
def running(env: dict[str, str]) -> Iterator[ControllerProcess]:
    """`imagepuller run`; stopped (SIGTERM, by its pid) on the way out if still running."""
    controller = ControllerProcess(env)
    try:
        yield controller
    finally:
        if controller.process.poll() is None:
            with contextlib.suppress(AssertionError):  # it was killed then; already reported
                controller.stop(timeout=60)


@contextlib.contextmanager
def configmap_controller(
    api: Api, cluster: LocalCluster, args: argparse.Namespace, **settings: str
) -> Iterator[ControllerProcess]:
    """The controller reading its settings from ConfigMap CONFIGMAP, as in a cluster."""
    env = controller_env(cluster, args, **settings)
    data = {k: v for k, v in env.items() if k != "KUBECONFIG"}
    api.put_configmap(data)
    with running({**env, "CONFIGMAP_NAME": CONFIGMAP, "POD_NAMESPACE": NAMESPACE}) as controller:
        yield controller


def wait_ready(controller: ControllerProcess, nodes: int, timeout: float) -> dict[str, Any]:
    return controller.wait_for("daemonset_ready", timeout, where=lambda e: e["desired"] == nodes)


def stop_and_wait_gone(controller: ControllerProcess, api: Api, timeout: float) -> None:
    code = controller.stop(timeout=60)
    if code != 0:
        print(f"  note: the controller exited with {code}", flush=True)
    wait_puller_gone(api, timeout)


def after(event: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["_received"] > event["_received"]


def events_between(controller: ControllerProcess, name: str, start: float, end: float) -> int:
    return sum(
        1 for e in controller.events if e.get("event") == name and start < e["_received"] < end
    )


def holding_interval_hours(nodes: int, args: argparse.Namespace) -> float:
    """Long enough for a refresh to end before the next is due: 0.3 s a node, at least
    0.003 h (10.8 s); --interval-hours overrides."""
    if args.interval_hours:
        return float(args.interval_hours)
    return round(max(0.003, nodes * 0.3 / 3600), 4)


# --- figure 1: holding during a refresh --------------------------------------------------------


@dataclass
class Holding:
    nodes: int
    strategy: str
    interval_s: float
    minimum: float
    mean: float
    samples: int
    sample_interval: float
    duration: float
    note: str = ""


def measure_holding(
    cluster: LocalCluster, api: Api, kube: Any, nodes: int, strategy: str, args: argparse.Namespace
) -> Holding:
    hours = holding_interval_hours(nodes, args)
    interval_s = hours * 3600
    node_names = set(cluster.ready_nodes())
    env = controller_env(
        cluster, args, CACHING_INTERVAL_HOURS=f"{hours:g}", REFRESH_STRATEGY=strategy
    )
    with running(env) as controller:
        wait_ready(controller, nodes, args.timeout)
        sampler = HoldingSampler(kube, NAMESPACE, SELECTOR, interval=0.1)
        sampler.start()
        try:
            due = controller.wait_for("refresh_due", interval_s + args.timeout)
            if strategy == "rolling":
                end = controller.wait_for("refresh_complete", args.timeout, where=after(due))
            else:
                # Events are taken in order: this ready follows the new DaemonSet's creation.
                controller.wait_for("daemonset_created", args.timeout, where=after(due))
                end = wait_ready(controller, nodes, args.timeout)
        finally:
            sampler_died = not sampler.is_alive()
            samples = sampler.stop()
        start, stop = due["_received"], end["_received"]
        window = [(t, held) for t, held in samples if start <= t <= stop]
        note = []
        if sampler_died:
            note.append("the sampler stopped early (a failed pod list)")
        overlapping = events_between(controller, "refresh_due", start, stop)
        if overlapping:
            note.append(f"{overlapping} more refresh(es) due meanwhile: raise --interval-hours")
        stop_and_wait_gone(controller, api, args.timeout)
    fractions = [len(held & node_names) / len(node_names) for _, held in window]
    spacing = (window[-1][0] - window[0][0]) / (len(window) - 1) if len(window) > 1 else 0.0
    return Holding(
        nodes=nodes,
        strategy=strategy,
        interval_s=interval_s,
        minimum=min(fractions, default=float("nan")),
        mean=statistics.fmean(fractions) if fractions else float("nan"),
        samples=len(window),
        sample_interval=spacing,
        duration=stop - start,
        note="; ".join(note),
    )


def print_holding(rows: list[Holding]) -> None:
    print(
        f"{'nodes':>5}  {'strategy':<8}  {'min':>7}  {'mean':>7}  {'samples':>7}  "
        f"{'every':>7}  {'refresh':>8}  {'interval':>8}"
    )
    for r in rows:
        print(
            f"{r.nodes:>5}  {r.strategy:<8}  {r.minimum:>7.1%}  {r.mean:>7.1%}  {r.samples:>7}  "
            f"{r.sample_interval * 1000:>5.0f}ms  {r.duration:>7.1f}s  {r.interval_s:>7.1f}s"
            + (f"  ({r.note})" if r.note else "")
        )


# --- figure 2: ConfigMap edit -> DaemonSet template ------------------------------------------


def time_until_limit_changes(api: Api, before: str | None, sent: float, timeout: float) -> float:
    """Poll the DaemonSet every 20 ms until its memory limit differs from ``before``; the
    seconds from ``sent`` to the poll that saw it."""
    deadline = sent + timeout
    while True:
        value = memory_limit(api.get_daemonset())
        seen = time.monotonic()
        if value is not None and value != before:
            return seen - sent
        if seen > deadline:
            raise AssertionError(
                f"the DaemonSet's memory limit is still {value!r} {timeout:.0f}s after the edit"
            )
        time.sleep(0.02)


def measure_edits(
    cluster: LocalCluster, api: Api, nodes: int, args: argparse.Namespace
) -> tuple[list[float], list[float]]:
    """(edit -> template updated, edit -> config_applied) for each edit, in seconds."""
    to_template: list[float] = []
    to_applied: list[float] = []
    with configmap_controller(
        api, cluster, args, CACHING_INTERVAL_HOURS="1", CACHING_MEMORY_LIMIT="20Mi"
    ) as controller:
        wait_ready(controller, nodes, args.timeout)
        for edit in range(1, args.edits + 1):
            before = memory_limit(api.get_daemonset())
            value = "21Mi" if edit % 2 else "20Mi"
            sent = time.monotonic()
            api.patch_configmap({"CACHING_MEMORY_LIMIT": value})
            to_template.append(time_until_limit_changes(api, before, sent, 30))
            mark = {"_received": sent}
            applied = controller.wait_for("config_applied", 30, where=after(mark))
            to_applied.append(applied["_received"] - sent)
            wait_ready(controller, nodes, args.timeout)  # the roll is over before the next edit
            print(
                f"  edit {edit:2d} ({before} -> {value}): template {to_template[-1]:.3f}s, "
                f"config_applied {to_applied[-1]:.3f}s",
                flush=True,
            )
        stop_and_wait_gone(controller, api, args.timeout)
    return to_template, to_applied


def print_edits(nodes: int, to_template: list[float], to_applied: list[float]) -> None:
    for what, values in (
        ("DaemonSet template updated", to_template),
        ("config_applied", to_applied),
    ):
        print(
            f"ConfigMap edit -> {what} ({nodes} nodes, {len(values)} edits): "
            f"median {statistics.median(values):.3f}s, worst {max(values):.3f}s"
        )


# --- figure 3: API requests -------------------------------------------------------------------


@dataclass
class Requests:
    nodes: int
    labels: list[str]
    background_per_hour: Counts
    cluster_per_refresh: Counts
    rollout_per_refresh: Counts
    controller_per_refresh: Counts
    controller_per_idle_hour: Counts
    refreshes: int
    idle_seconds: float


def snapshot(api: Api) -> tuple[Counts, float]:
    text, at = api.metrics()
    return request_counts(text), at


def request_labels(api: Api) -> list[str]:
    text, _ = api.metrics()
    return sorted(
        {k for labels, _ in parse_samples(text, "apiserver_request_total") for k in labels}
    )


def scripted_refresh(api: Api, nodes: int, serial: int, timeout: float) -> None:
    """What the controller's rolling refresh does to the DaemonSet (one template annotation
    changed by a merge patch), then a wait for the roll to end."""
    # The serial keeps two refreshes in the same millisecond apart.
    api.patch_daemonset(refresh_patch(format_time(time.time() + serial / 1000)))
    wait_until(
        lambda: rollout_done(api.get_daemonset(), nodes),
        timeout,
        f"the scripted refresh {serial} to roll out on {nodes} nodes",
        interval=0.2,
    )


def measure_requests(
    cluster: LocalCluster, api: Api, nodes: int, args: argparse.Namespace
) -> Requests:
    wait_puller_gone(api, args.timeout)
    labels = request_labels(api)
    print(f"  apiserver_request_total labels: {', '.join(labels)}", flush=True)

    print(f"  background: {args.idle_seconds:.0f}s with no controller ...", flush=True)
    time.sleep(5)  # the last Events and status writes of the deletion before
    before, t0 = snapshot(api)
    time.sleep(args.idle_seconds)
    later, t1 = snapshot(api)
    rate = combine((1 / (t1 - t0), later), (-1 / (t1 - t0), before))  # per second

    k = args.metric_refreshes
    hours = holding_interval_hours(nodes, args)
    print(f"  {k} rolling refreshes by the controller (interval {hours * 3600:.1f}s) ...")
    with configmap_controller(api, cluster, args, CACHING_INTERVAL_HOURS=f"{hours:g}") as ctl:
        wait_ready(ctl, nodes, args.timeout)
        ctl.wait_for("refresh_complete", hours * 3600 + args.timeout)  # in its steady rhythm
        before, t0 = snapshot(api)
        for _ in range(k):
            ctl.wait_for("refresh_complete", hours * 3600 + args.timeout)
        later, t1 = snapshot(api)
        # Killed so that the DaemonSet stays for the same refreshes made by this script.
        ctl.kill()
    cluster_per_refresh = combine((1 / k, later), (-1 / k, before), (-(t1 - t0) / k, rate))

    print(f"  the same {k} refreshes made by this script, without the controller ...")
    time.sleep(2)  # the killed controller's connections are closed and counted
    own_before = dict(api.own)
    before, t0 = snapshot(api)
    for serial in range(k):
        scripted_refresh(api, nodes, serial, args.timeout)
    later, t1 = snapshot(api)
    own = combine((1, api.own), (-1, own_before))
    rollout_per_refresh = combine(
        (1 / k, later), (-1 / k, before), (-1 / k, own), (-(t1 - t0) / k, rate)
    )
    api.delete_daemonset()
    wait_puller_gone(api, args.timeout)

    print(f"  idle: CACHING_INTERVAL_HOURS=1, {args.idle_seconds:.0f}s ...", flush=True)
    with configmap_controller(api, cluster, args, CACHING_INTERVAL_HOURS="1") as ctl:
        wait_ready(ctl, nodes, args.timeout)
        time.sleep(2)  # the last status updates of the first roll
        before, t0 = snapshot(api)
        time.sleep(args.idle_seconds)
        later, t1 = snapshot(api)
        stop_and_wait_gone(ctl, api, args.timeout)
    per_hour = 3600 / (t1 - t0)
    idle = combine((per_hour, later), (-per_hour, before), (-3600, rate))

    return Requests(
        nodes=nodes,
        labels=labels,
        background_per_hour=combine((3600, rate)),
        cluster_per_refresh=cluster_per_refresh,
        rollout_per_refresh=rollout_per_refresh,
        controller_per_refresh=combine((1, cluster_per_refresh), (-1, rollout_per_refresh)),
        controller_per_idle_hour=idle,
        refreshes=k,
        idle_seconds=t1 - t0,
    )


def print_counts(title: str, columns: list[tuple[str, Counts]]) -> None:
    """A table by (resource, verb), only rows where some column differs from zero."""
    keys = {key for _, counts in columns for key, value in counts.items() if abs(value) >= 0.05}
    if not keys:
        print(f"{title}: no requests")
        return
    ordered = sorted(keys, key=lambda k: (RESOURCES.index(k[1].split("/")[0]), k[1], k[0]))
    print(title)
    print(f"  {'resource':<22} {'verb':<16}" + "".join(f" {name:>14}" for name, _ in columns))
    for verb, resource in ordered:
        cells = "".join(f" {counts.get((verb, resource), 0.0):>14.1f}" for _, counts in columns)
        print(f"  {resource:<22} {verb:<16}{cells}")


def print_requests(r: Requests) -> None:
    client_labels = [x for x in r.labels if x in ("client", "user", "username", "user_agent")]
    print(
        f"apiserver_request_total labels: {', '.join(r.labels)}"
        + (f" (client label present: {client_labels})" if client_labels else " (no client label)")
    )
    print_counts(
        f"API requests per rolling refresh ({r.nodes} nodes, mean of {r.refreshes}; "
        "background subtracted; 'controller' = 'with controller' - 'rollout only')",
        [
            ("with controller", r.cluster_per_refresh),
            ("rollout only", r.rollout_per_refresh),
            ("controller", r.controller_per_refresh),
        ],
    )
    print_counts(
        f"API requests per idle hour ({r.nodes} nodes, from {r.idle_seconds:.0f}s; WATCH is "
        "counted when a watch ends, up to 300s each: use --idle-seconds 600+ for a steady figure)",
        [("controller", r.controller_per_idle_hour), ("background", r.background_per_hour)],
    )


# --- figure 4: controller RSS over refreshes --------------------------------------------------


@dataclass
class Rss:
    nodes: int
    refreshes: int
    completed: int
    interval_s: float
    seconds: float
    by_refresh: dict[int, float]


def measure_rss(cluster: LocalCluster, api: Api, nodes: int, args: argparse.Namespace) -> Rss:
    hours = args.rss_interval_hours
    env = controller_env(cluster, args, CACHING_INTERVAL_HOURS=f"{hours:g}")
    checkpoints = {c for c in RSS_CHECKPOINTS if c <= args.refreshes} | {args.refreshes}
    by_refresh: dict[int, float] = {}
    with running(env) as controller:
        pid = controller.process.pid
        wait_ready(controller, nodes, args.timeout)
        began = time.monotonic()
        first = controller.wait_for("refresh_started", hours * 3600 + args.timeout)
        for refresh in range(1, args.refreshes + 1):
            # Refresh ``refresh`` is over (complete, or overtaken) when the next one starts.
            controller.wait_for("refresh_started", hours * 3600 + args.timeout)
            if refresh in checkpoints:
                by_refresh[refresh] = rss_mib(pid) or float("nan")
                print(
                    f"  after refresh {refresh:4d}: controller RSS {by_refresh[refresh]:.1f} MiB "
                    f"({time.monotonic() - began:.0f}s)",
                    flush=True,
                )
        completed = events_between(controller, "refresh_complete", first["_received"], 1e18)
        seconds = time.monotonic() - began
        stop_and_wait_gone(controller, api, args.timeout)
    return Rss(nodes, args.refreshes, completed, hours * 3600, seconds, by_refresh)


def print_rss(r: Rss) -> None:
    points = ", ".join(f"{k}: {v:.1f}" for k, v in sorted(r.by_refresh.items()))
    warm = 10 if 10 in r.by_refresh else min(r.by_refresh)
    last = max(r.by_refresh)
    print(
        f"controller RSS over {r.refreshes} rolling refreshes on {r.nodes} nodes "
        f"(interval {r.interval_s:.1f}s, {r.seconds / r.refreshes:.1f}s per refresh, "
        f"{r.completed} refresh_complete logged): MiB after refresh {points}; "
        f"growth {warm} -> {last}: {r.by_refresh[last] / r.by_refresh[warm]:.3f}x"
    )
    if r.completed < r.refreshes:
        print(
            "  note: fewer refresh_complete than refreshes: a refresh came due before the "
            "previous roll ended (the interval is shorter than a roll at this size)"
        )


# --- the run ----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--nodes", default="50,200", help="node counts, comma-separated")
    parser.add_argument("--refreshes", type=int, default=100, help="refreshes for the RSS figure")
    parser.add_argument("--edits", type=int, default=10, help="ConfigMap edits timed")
    parser.add_argument("--metric-refreshes", type=int, default=3, help="refreshes counted")
    parser.add_argument("--idle-seconds", type=float, default=120.0, help="idle/background window")
    parser.add_argument("--max-surge", default="10%", help="REFRESH_MAX_SURGE")
    parser.add_argument(
        "--interval-hours",
        type=float,
        default=None,
        help="CACHING_INTERVAL_HOURS for figures 1 and 3 (default: 0.3 s a node, >= 0.003)",
    )
    parser.add_argument("--rss-interval-hours", type=float, default=0.001)
    parser.add_argument("--timeout", type=float, default=300.0, help="bound of every wait (s)")
    parser.add_argument("--figures", default=",".join(FIGURES), help=", ".join(FIGURES))
    args = parser.parse_args()
    args.node_counts = sorted({int(n) for n in args.nodes.split(",") if n.strip()})
    args.figure_set = {f.strip() for f in args.figures.split(",") if f.strip()}
    unknown = args.figure_set - set(FIGURES)
    if not args.node_counts or unknown or args.refreshes < 1 or args.edits < 1:
        parser.error(f"need node counts, --refreshes/--edits >= 1, figures among {FIGURES}")
    return args


def main() -> int:
    args = parse_args()
    print(describe(), flush=True)
    smallest, largest = args.node_counts[0], args.node_counts[-1]
    holding: list[Holding] = []
    edits: tuple[int, list[float], list[float]] | None = None
    requests: Requests | None = None
    rss: Rss | None = None

    for nodes in args.node_counts:
        with tempfile.TemporaryDirectory(prefix="imagepuller-bench-") as tmp:
            print(f"\nstarting a local cluster with {nodes} nodes ...", flush=True)
            with LocalCluster(Path(tmp), nodes=nodes) as cluster:
                print(f"cluster start-up: {cluster.start_seconds:.1f}s", flush=True)
                api = Api(cluster)
                api.create_namespace()
                kube = config.new_client_from_config(config_file=str(cluster.kubeconfig))
                if "holding" in args.figure_set:
                    for strategy in ("rolling", "recreate"):
                        print(f"holding during a {strategy} refresh on {nodes} nodes ...")
                        holding.append(measure_holding(cluster, api, kube, nodes, strategy, args))
                        print_holding(holding[-1:])
                if nodes == smallest and "requests" in args.figure_set:
                    print(f"API requests on {nodes} nodes ...", flush=True)
                    requests = measure_requests(cluster, api, nodes, args)
                    print_requests(requests)
                if nodes == smallest and "edits" in args.figure_set:
                    print(f"ConfigMap edits on {nodes} nodes ...", flush=True)
                    edits = (nodes, *measure_edits(cluster, api, nodes, args))
                    print_edits(*edits)
                if nodes == largest and "rss" in args.figure_set:
                    print(f"controller RSS over {args.refreshes} refreshes on {nodes} nodes ...")
                    rss = measure_rss(cluster, api, nodes, args)
                    print_rss(rss)
                kube.close()
                api.pool.clear()

    print("\n=== results ===")
    print(describe())
    if holding:
        print("\nholding the images during a refresh (fraction of the nodes, sampled):")
        print_holding(holding)
    if edits:
        print()
        print_edits(*edits)
    if requests:
        print()
        print_requests(requests)
    if rss:
        print()
        print_rss(rss)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
