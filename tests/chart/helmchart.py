"""Running the real helm (hack/build-helm-tools.sh) on charts/imagepuller, and reading what it
renders."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "imagepuller"
EXAMPLES = CHART / "examples"
IMAGES = "java=quay.io/eclipse/che-java17-maven:next;node=docker.io/library/node:20-alpine;"


def helm(
    tools: dict[str, Path], *args: str, kubeconfig: Path | None = None, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`helm ARGS` with its own cache and config (never the machine's), and the cluster's
    kubeconfig when given. Not checked: the caller reads the exit code."""
    state = home or Path(os.environ.get("TMPDIR", "/tmp")) / "imagepuller-helm-home"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(state),
        "XDG_CACHE_HOME": str(state / "cache"),
        "XDG_CONFIG_HOME": str(state / "config"),
        "XDG_DATA_HOME": str(state / "data"),
        "KUBECONFIG": str(kubeconfig) if kubeconfig else "/nonexistent",
    }
    return subprocess.run(
        [str(tools["helm"]), *args], capture_output=True, text=True, timeout=180, env=env
    )


def render(
    tools: dict[str, Path],
    *values: str,
    namespace: str = "k8s-image-puller",
    files: tuple[Path, ...] = (),
) -> list[dict[str, Any]]:
    """`helm template` with ``--set`` pairs ``values`` and values ``files``: the objects."""
    args = ["template", "imagepuller", str(CHART), "-n", namespace]
    for path in files:
        args += ["-f", str(path)]
    for value in values:
        args += ["--set", value]
    result = helm(tools, *args)
    assert result.returncode == 0, result.stderr
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def by_kind_and_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in found, f"{key} rendered twice"
        found[key] = obj
    return found
