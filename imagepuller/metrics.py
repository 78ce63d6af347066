"""Prometheus metrics: what the puller holds, per puller, and how the process is doing.

Per puller the labels are only ``namespace`` and ``daemonset`` (and a failure ``reason``):
never a node or an image, so a series count stays bounded on a 5,000-node cluster. Names
follow Prometheus' conventions (one ``imagepuller_`` prefix, base units, ``_total`` on
counters, ``_timestamp_seconds`` for times) and, for the loop, controller-runtime's, so the
dashboards and alerts written for Go operators work unchanged.

``Metrics`` itself records nothing; ``PrometheusMetrics`` does. With METRICS_PORT=0 the
controller gets the former and prometheus_client is never imported.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

CONTROLLER_NAME = "imagepuller"
# At most this many failing nodes are named per puller (imagepuller_node_failing), so that an
# alert can say where and why while the series count stays bounded on a 5,000-node cluster; the
# others are counted, by reason, in imagepuller_pods_failing.
NODES_NAMED = 10
# Refreshes take seconds (a few nodes) to many minutes (thousands of nodes, slow registries).
REFRESH_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    """Records nothing: every method is a no-op."""

    def api_request(self, verb: str, resource: str, code: str, seconds: float) -> None:
        pass

    def reconciled(self, result: str, seconds: float) -> None:
        pass

    def daemonset_observed(
        self, namespace: str, name: str, *, desired: int, holding: int, images: int
    ) -> None:
        pass

    def failing_pods(
        self,
        namespace: str,
        name: str,
        by_reason: Mapping[str, int],
        nodes: Mapping[str, str] | None = None,
    ) -> None:
        """``by_reason``: failing containers by the kubelet's reason; ``nodes``: the reason of
        each failing node (the first NODES_NAMED, by name, are exported)."""

    def probed(self, *, alive: bool, ready: bool) -> None:
        """What /healthz and /readyz answer now (recorded when /metrics is scraped)."""

    def refresh_started(self, namespace: str, name: str) -> None:
        pass

    def refresh_completed(self, namespace: str, name: str, *, seconds: float, at: float) -> None:
        pass

    def refresh_failed(self, namespace: str, name: str) -> None:
        pass

    def config_rejected(self, namespace: str, name: str) -> None:
        pass

    def image_list_failed(self, namespace: str, name: str) -> None:
        pass

    def forget(self, namespace: str, name: str) -> None:
        """The puller ``namespace``/``name`` is gone (its resource deleted): drop its series."""

    def exposition(self) -> tuple[bytes, str]:
        return b"", "text/plain"


def metrics_for(port: int) -> Metrics:
    """What METRICS_PORT asks for: recorded for Prometheus, or (0) not at all, without even
    importing prometheus_client."""
    return PrometheusMetrics() if port else Metrics()


class PrometheusMetrics(Metrics):
    def __init__(self) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            ProcessCollector,
        )

        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, cpu, fds
        puller = ("namespace", "daemonset")
        self._desired = Gauge(
            "imagepuller_nodes_desired",
            "Nodes the DaemonSet selects (status.desiredNumberScheduled).",
            puller,
            registry=registry,
        )
        self._holding = Gauge(
            "imagepuller_nodes_holding",
            "Selected nodes holding every image: an available pod runs there "
            "(status.numberAvailable).",
            puller,
            registry=registry,
        )
        self._images = Gauge(
            "imagepuller_images",
            "Images configured: containers of the DaemonSet's pod template.",
            puller,
            registry=registry,
        )
        self._failing = Gauge(
            "imagepuller_pods_failing",
            "Containers not ready after READY_TIMEOUT, by the kubelet's reason "
            "(ErrImagePull, ImagePullBackOff, FailedCreate, ...); 0 once ready.",
            (*puller, "reason"),
            registry=registry,
        )
        self._node_failing = Gauge(
            "imagepuller_node_failing",
            f"1 for a node whose pod is not ready after READY_TIMEOUT, with the kubelet's "
            f"reason; at most {NODES_NAMED} nodes per puller, the first by name.",
            (*puller, "node", "reason"),
            registry=registry,
        )
        self._alive = Gauge(
            "imagepuller_alive",
            "1 while /healthz answers 200 (the loop is not stuck), 0 when it fails.",
            registry=registry,
        )
        self._ready = Gauge(
            "imagepuller_ready",
            "1 while /readyz answers 200 (the API is reached, the configuration valid).",
            registry=registry,
        )
        self._started = Counter(
            "imagepuller_refreshes_started",
            "Refreshes started (rolling or recreate).",
            puller,
            registry=registry,
        )
        self._completed = Counter(
            "imagepuller_refreshes_completed",
            "Refreshes after which every selected node held every image.",
            puller,
            registry=registry,
        )
        self._failed = Counter(
            "imagepuller_refreshes_failed",
            "Refreshes not complete within READY_TIMEOUT (nodes keep their old pods).",
            puller,
            registry=registry,
        )
        self._last_refresh = Gauge(
            "imagepuller_last_refresh_timestamp_seconds",
            "When the last successful refresh completed (Unix time).",
            puller,
            registry=registry,
        )
        self._duration = Histogram(
            "imagepuller_refresh_duration_seconds",
            "From the start of a refresh until every selected node held every image.",
            puller,
            buckets=REFRESH_BUCKETS,
            registry=registry,
        )
        self._rejected = Counter(
            "imagepuller_config_rejections",
            "Configurations refused (by our checks or the API's dry run); nothing was changed.",
            puller,
            registry=registry,
        )
        self._list_failures = Counter(
            "imagepuller_image_list_failures",
            "Readings of an IMAGES_FROM list that failed or were over a limit.",
            puller,
            registry=registry,
        )
        self._requests = Counter(
            "imagepuller_api_requests",
            "Kubernetes API requests by verb, resource and HTTP code ('error': no answer).",
            ("verb", "resource", "code"),
            registry=registry,
        )
        self._latency = Histogram(
            "imagepuller_api_request_duration_seconds",
            "Kubernetes API request latency (watches excluded: they last minutes).",
            ("verb", "resource"),
            registry=registry,
        )
        self._reconciles = Counter(
            "controller_runtime_reconcile",
            "Looks at the cluster, by result (success, requeue, error).",
            ("controller", "result"),
            registry=registry,
        )
        self._reconcile_errors = Counter(
            "controller_runtime_reconcile_errors",
            "Looks that ended in an error (retried with backoff).",
            ("controller",),
            registry=registry,
        )
        self._reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "How long one look took.",
            ("controller",),
            registry=registry,
        )
        self._failing_reasons: dict[tuple[str, str], set[str]] = {}
        self._failing_nodes: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._seen: set[tuple[str, str]] = set()  # pullers whose counters are exported at 0
        self._counters = (
            self._started,
            self._completed,
            self._failed,
            self._rejected,
            self._list_failures,
        )
        # Every series labelled (namespace, daemonset) alone: what ``forget`` removes.
        self._per_puller = (
            self._desired,
            self._holding,
            self._images,
            self._started,
            self._completed,
            self._failed,
            self._last_refresh,
            self._duration,
            self._rejected,
            self._list_failures,
        )

    def api_request(self, verb: str, resource: str, code: str, seconds: float) -> None:
        self._requests.labels(verb, resource, code).inc()
        if verb != "watch":
            self._latency.labels(verb, resource).observe(seconds)

    def reconciled(self, result: str, seconds: float) -> None:
        self._reconciles.labels(CONTROLLER_NAME, result).inc()
        if result == "error":
            self._reconcile_errors.labels(CONTROLLER_NAME).inc()
        self._reconcile_time.labels(CONTROLLER_NAME).observe(seconds)

    def daemonset_observed(
        self, namespace: str, name: str, *, desired: int, holding: int, images: int
    ) -> None:
        if (namespace, name) not in self._seen:
            # Every counter of the puller is exported from its first sight, at 0: a series
            # that appears only at its first event hides that event from increase() and rate().
            self._seen.add((namespace, name))
            for counter in self._counters:
                counter.labels(namespace, name)
        self._desired.labels(namespace, name).set(desired)
        self._holding.labels(namespace, name).set(holding)
        self._images.labels(namespace, name).set(images)

    def failing_pods(
        self,
        namespace: str,
        name: str,
        by_reason: Mapping[str, int],
        nodes: Mapping[str, str] | None = None,
    ) -> None:
        # A reason no longer failing goes to 0 (kept, so a rate or an alert sees it end).
        key = (namespace, name)
        reasons = self._failing_reasons.setdefault(key, set())
        reasons.update(by_reason)
        for reason in reasons:
            self._failing.labels(namespace, name, reason).set(by_reason.get(reason, 0))
        # A node no longer failing (or no longer among the first named) loses its series.
        nodes = nodes or {}
        named = {(node, nodes[node]) for node in sorted(nodes)[:NODES_NAMED]}
        before = self._failing_nodes.get(key, set())
        for node, reason in before - named:
            with contextlib.suppress(KeyError):
                self._node_failing.remove(namespace, name, node, reason)
        for node, reason in named:
            self._node_failing.labels(namespace, name, node, reason).set(1)
        self._failing_nodes[key] = named

    def probed(self, *, alive: bool, ready: bool) -> None:
        self._alive.set(1 if alive else 0)
        self._ready.set(1 if ready else 0)

    def refresh_started(self, namespace: str, name: str) -> None:
        self._started.labels(namespace, name).inc()

    def refresh_completed(self, namespace: str, name: str, *, seconds: float, at: float) -> None:
        self._completed.labels(namespace, name).inc()
        self._duration.labels(namespace, name).observe(seconds)
        self._last_refresh.labels(namespace, name).set(at)

    def refresh_failed(self, namespace: str, name: str) -> None:
        self._failed.labels(namespace, name).inc()

    def config_rejected(self, namespace: str, name: str) -> None:
        self._rejected.labels(namespace, name).inc()

    def image_list_failed(self, namespace: str, name: str) -> None:
        self._list_failures.labels(namespace, name).inc()

    def forget(self, namespace: str, name: str) -> None:
        # Without this, each deleted or renamed puller's series would be exported for as long as
        # the process lives: a series count growing with every resource ever seen.
        # A label set never seen is not an error (older prometheus_client raised KeyError).
        for metric in self._per_puller:
            with contextlib.suppress(KeyError):
                metric.remove(namespace, name)
        for reason in self._failing_reasons.pop((namespace, name), set()):
            with contextlib.suppress(KeyError):
                self._failing.remove(namespace, name, reason)
        self._seen.discard((namespace, name))
        for node, reason in self._failing_nodes.pop((namespace, name), set()):
            with contextlib.suppress(KeyError):
                self._node_failing.remove(namespace, name, node, reason)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def value(self, name: str, labels: dict[str, Any] | None = None) -> float | None:
        """One sample's value, for tests."""
        return self.registry.get_sample_value(name, labels or {})
