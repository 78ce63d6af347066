"""The alerts, checked with the real promtool (hack/build-helm-tools.sh): `promtool check rules`
on the chart's file and on the PrometheusRule of manifests/monitoring, and `promtool test rules`
on tests/monitoring/rules_test.yaml, whose input series have exactly the names and labels the
puller exports (plus the target's labels Prometheus adds)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.monitoring.exported import TARGET_LABELS, full_exposition, series_label_names
from tests.monitoring.promtool import RULES, alerts, promtool

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_RULE = ROOT / "manifests" / "monitoring" / "base" / "prometheusrule.yaml"
RULES_TEST = Path(__file__).resolve().parent / "rules_test.yaml"
ALERTS_DOC = ROOT / "docs" / "alerts.md"
SERIES = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\}$")


def test_the_rules_pass_promtool_check(helm_tools, tmp_path):
    result = promtool(helm_tools, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout
    # The PrometheusRule carries the same groups, and they pass too.
    spec = yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]
    assert spec == yaml.safe_load(RULES.read_text())
    extracted = tmp_path / "prometheusrule-spec.yaml"
    extracted.write_text(yaml.safe_dump(spec))
    result = promtool(helm_tools, "check", "rules", str(extracted))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_unit_tests_pass_with_promtool(helm_tools):
    result = promtool(helm_tools, "test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_silent_and_has_a_runbook():
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    docs = ALERTS_DOC.read_text()
    for alert in alerts():
        name = alert["alert"]
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no case where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{name}: no case where it is silent"
        anchor = alert["annotations"]["runbook"].split("#", 1)[1]
        assert f"## {name}" in docs and anchor == name.lower(), name


def test_the_test_series_are_shaped_like_the_puller_exports_them():
    exported = series_label_names(full_exposition())
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    for test in tests:
        for series in test["input_series"]:
            match = SERIES.match(series["series"])
            assert match, series
            name = match["name"]
            labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', match["labels"]))
            if name == "up":  # Prometheus' own series of each target
                continue
            assert name in exported, f"{name} is not a series the puller exports"
            # `namespace` is the puller's own label where it exports one (honorLabels), the
            # target's otherwise: either reading must be a label set the puller exports.
            own = labels - TARGET_LABELS
            readings = {frozenset(own), frozenset(own | ({"namespace"} & labels))}
            assert readings & exported[name], f"{series['series']}: not as the puller exports"


def test_the_rules_use_only_series_the_puller_exports():
    exported = set(series_label_names(full_exposition())) | {"up"}
    for alert in alerts():
        used = re.findall(r"\b(?:imagepuller|process|controller_runtime)_\w+", alert["expr"])
        assert used or "up{" in alert["expr"], alert["alert"]
        for name in used:
            assert name in exported, (alert["alert"], name)
