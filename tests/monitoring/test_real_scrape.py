"""The alerts fed with real scrapes: `imagepuller run` on the local control plane, its /metrics
read while one node cannot pull an image and again once every node holds every image, each
scrape turned into promtool input series (as Prometheus stores a scrape through the
ServiceMonitor: the target's labels added, the puller's own `namespace` kept) and
`promtool test rules` asked which alerts fire."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.conftest import NAME
from tests.httpget import get
from tests.monitoring.promtool import RULES, alerts, promtool
from tests.ports import free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
GOOD = "java=quay.io/eclipse/che-java17-maven:next;"
# Pulls everywhere except on node-1 (the local cluster's kwok stages fail it there).
FAILS_ON_NODE_1 = "tool=registry.invalid-on-node-1/team/tool:1;"
ALERTS = [rule["alert"] for rule in alerts()]


def scrape(port: int) -> str:
    """/metrics' text ("" while the endpoints are not listening yet)."""
    try:
        return get(f"http://127.0.0.1:{port}/metrics")[1]
    except urllib.error.URLError:
        return ""


def scrape_with(port: int, wanted: str) -> str | None:
    text = scrape(port)
    return text if wanted in text else None


def as_input_series(exposition: str, namespace: str, port: int) -> list[dict[str, str]]:
    """Each sample of the scrape as an unchanging series for an hour, with the labels the
    ServiceMonitor's target adds, and the target's `up`."""
    target = {
        "job": "imagepuller",
        "instance": f"127.0.0.1:{port}",
        "pod": "kubernetes-image-puller-5d8f7-x2x9q",
        "service": "kubernetes-image-puller-metrics",
        "endpoint": "metrics",
        "container": "kubernetes-image-puller",
    }
    series = [{"series": _selector("up", {**target, "namespace": namespace}), "values": "1+0x60"}]
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = {"namespace": namespace, **target, **sample.labels}  # honorLabels
            series.append(
                {"series": _selector(sample.name, labels), "values": f"{sample.value!r}+0x60"}
            )
    return series


def _selector(name: str, labels: dict[str, str]) -> str:
    inside = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return f"{name}{{{inside}}}"


def promtool_test(tools, tmp_path: Path, series, expected: dict[str, list[dict]]) -> None:
    """`promtool test rules` at 35 minutes: exactly ``expected`` alerts fire, none other."""
    cases = [
        {"eval_time": "35m", "alertname": name, "exp_alerts": expected.get(name, [])}
        for name in ALERTS
    ]
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases}],
    }
    path = tmp_path / "real_scrape_test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = promtool(tools, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_real_scrapes_fire_only_the_alerts_they_should(
    cluster, controllers, namespace, helm_tools, tmp_path
):
    port = free_port()
    base = {
        "KUBECONFIG": str(cluster.kubeconfig),
        "NAMESPACE": namespace,
        "METRICS_HOST": "127.0.0.1",
        "METRICS_PORT": str(port),
    }
    controller = controllers({**base, "IMAGES": GOOD + FAILS_ON_NODE_1, "READY_TIMEOUT": "5s"})
    failing = f'imagepuller_node_failing{{daemonset="{NAME}",namespace="{namespace}",node="node-1"'
    text = wait_until(
        lambda: scrape_with(port, failing),
        90,
        "/metrics to name node-1 as failing",
    )
    (line,) = [line for line in text.splitlines() if line.startswith(failing)]
    reason = line.split('reason="', 1)[1].split('"', 1)[0]
    assert reason in ("ErrImagePull", "ImagePullBackOff"), line
    puller = {"namespace": namespace, "daemonset": NAME}
    not_held = {
        "exp_labels": {**puller, "severity": "warning"},
        "exp_annotations": {
            "summary": f"{namespace}/{NAME}: 1 selected nodes have not held every image for "
            "30 minutes",
            "description": f"DaemonSet {namespace}/{NAME}: 1 of the nodes it selects have no "
            "ready pod holding every image. Failing nodes (at most 10, with the kubelet's "
            f"reason): node-1 ({reason}). Every node: imagepuller status -n {namespace}.",
            "runbook": "docs/alerts.md#imagepullerimagesnotheld",
        },
    }
    promtool_test(
        helm_tools,
        tmp_path,
        as_input_series(text, namespace, port),
        {"ImagePullerImagesNotHeld": [not_held]},
    )

    # Every node holds every image: the same puller's scrape fires nothing.
    assert controller.stop() == 0
    controller = controllers({**base, "IMAGES": GOOD})
    controller.wait_for("daemonset_ready", 90)
    healthy = wait_until(
        lambda: scrape_with(port, "imagepuller_nodes_holding{"),
        30,
        "/metrics with the holding nodes",
    )
    assert "imagepuller_node_failing{" not in healthy
    promtool_test(helm_tools, tmp_path, as_input_series(healthy, namespace, port), {})
