"""The real promtool (hack/build-helm-tools.sh) and the alerting rules it checks."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
# The rules as promtool reads them; manifests/monitoring's PrometheusRule carries the same groups.
RULES = ROOT / "charts" / "imagepuller" / "files" / "prometheus-rules.yaml"


def promtool(tools: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    """`promtool ARGS`; not checked: the caller reads the exit code and the output."""
    return subprocess.run(
        [str(tools["promtool"]), *args], capture_output=True, text=True, timeout=120
    )


def alerts() -> list[dict[str, Any]]:
    """Every alerting rule of RULES."""
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]
