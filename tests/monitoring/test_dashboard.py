"""The Grafana dashboard: every query uses only series the puller exports, and parses as PromQL
(promtool checks each, its Grafana variables replaced by plain values)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.monitoring.exported import full_exposition, series_label_names
from tests.monitoring.promtool import promtool

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "imagepuller" / "files" / "dashboard.json"
PACK_DASHBOARD = ROOT / "manifests" / "monitoring" / "base" / "dashboard.json"
METRIC = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__range": "1h",
    '"$namespace"': '".*"',
    '"$daemonset"': '".*"',
}


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    found += [
        v["query"]["query"].removeprefix("label_values(").rsplit(",", 1)[0]
        for v in dashboard["templating"]["list"]
        if v["type"] == "query"
    ]
    return found


def test_the_pack_and_the_chart_have_the_same_dashboard():
    assert DASHBOARD.read_bytes() == PACK_DASHBOARD.read_bytes()


def test_every_query_uses_only_series_the_puller_exports():
    exported = set(series_label_names(full_exposition())) | {"up"}
    used = {name for query in queries() for name in METRIC.findall(query)}
    assert used, "no metric found in the dashboard's queries"
    assert used <= exported, sorted(used - exported)
    # Holding per puller, refresh durations, failures by reason, API request rates.
    for wanted in (
        "imagepuller_nodes_holding",
        "imagepuller_refresh_duration_seconds_bucket",
        "imagepuller_pods_failing",
        "imagepuller_api_requests_total",
    ):
        assert wanted in used, wanted


def test_every_query_is_valid_promql(helm_tools, tmp_path):
    rules = []
    for number, query in enumerate(queries()):
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, query
        rules.append({"record": f"dashboard:query_{number}", "expr": query})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool(helm_tools, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
