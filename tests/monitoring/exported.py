"""The series the puller exports: every method of ``PrometheusMetrics`` called once, read back
through the same exposition /metrics serves."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from imagepuller.metrics import PrometheusMetrics

# Labels Prometheus adds to every scraped series through the ServiceMonitor (honorLabels keeps
# the puller's own `namespace`; the target's namespace is used where the series has none).
TARGET_LABELS = frozenset(
    {"job", "instance", "pod", "service", "endpoint", "container", "namespace"}
)


def full_exposition() -> str:
    metrics = PrometheusMetrics()
    metrics.api_request("list", "daemonsets.apps", "200", 0.01)
    metrics.api_request("watch", "daemonsets.apps", "200", 0.01)
    metrics.reconciled("success", 0.02)
    metrics.reconciled("error", 0.02)
    metrics.daemonset_observed("ns", "ds", desired=3, holding=2, images=2)
    metrics.failing_pods("ns", "ds", {"ErrImagePull": 1}, {"node-1": "ErrImagePull"})
    metrics.refresh_started("ns", "ds")
    metrics.refresh_completed("ns", "ds", seconds=5.0, at=1.0)
    metrics.refresh_failed("ns", "ds")
    metrics.config_rejected("ns", "ds")
    metrics.image_list_failed("ns", "ds")
    metrics.probed(alive=True, ready=True)
    return metrics.exposition()[0].decode()


def series_label_names(exposition: str) -> dict[str, set[frozenset[str]]]:
    """Each sample name (with _total, _bucket, ... as stored) and its label name sets."""
    found: dict[str, set[frozenset[str]]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found.setdefault(sample.name, set()).add(frozenset(sample.labels))
    return found
