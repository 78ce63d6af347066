"""`make cluster-up NODES=50` / `make cluster-down`, through the same entry point.

It starts its own cluster (not the shared fixture) in a temporary directory, so it cannot
collide with a developer's `.cluster/`. The start-up time and memory are printed, not asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kubernetes import client, config

from localcluster.process import pid_alive

ROOT = Path(__file__).resolve().parents[2]


def localcluster(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localcluster", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_cluster_up_with_50_nodes_then_down(tmp_path):
    directory = tmp_path / "cluster"
    up = localcluster("up", "--nodes", "50", "--dir", str(directory), timeout=300)
    try:
        assert up.returncode == 0, up.stderr
        print(up.stdout)  # start-up seconds and RSS per component (shown with -s)
        assert "cluster with 50 nodes up in" in up.stdout
        state = json.loads((directory / "state.json").read_text())
        api = config.new_client_from_config(config_file=str(directory / "kubeconfig"))
        with api:
            nodes = client.CoreV1Api(api).list_node().items
        ready = [
            n.metadata.name
            for n in nodes
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        ]
        assert len(ready) == 50
    finally:
        down = localcluster("down", "--dir", str(directory), timeout=120)
    assert down.returncode == 0, down.stderr
    # Every process it started is gone, and so is its directory.
    for name, proc in state["processes"].items():
        assert not pid_alive(proc["pid"]), f"{name} (pid {proc['pid']}) still running"
    assert not directory.exists()
