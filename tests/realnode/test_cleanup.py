"""`make cluster-up REAL_NODES=1` then `make cluster-down` leaves the machine as it was.

Runs before the other real-node tests (file order), while no other real node is up on this
machine, so the sysctls are the machine's own. A pod runs on the real node in between, so that
there are pod mounts, a network namespace, veths and pod cgroups to put back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from localcluster.host import HostChanges, machine_state
from localcluster.process import pid_alive
from tests.realnode.conftest import REPO, _require_real_nodes
from tests.waiting import wait_until


def localcluster(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "localcluster", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,  # longer than up's own --timeout, so up reports rather than this
    )


def _fatal_lines(directory: Path) -> str:
    """The error lines of every component's log (the tail alone may miss the cause)."""
    lines = []
    for log in sorted(directory.rglob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(("E", "F")) or "level=error" in line or "level=fatal" in line:
                lines.append(f"{log.name}: {line[:300]}")
    return "\n" + "\n".join(lines[-40:])


@pytest.mark.parametrize("supervisor", ["stopped by down", "killed before down"])
def test_cluster_down_puts_back_everything_a_real_node_changed(
    tmp_path: Path, stack, supervisor: str
):
    _require_real_nodes()
    before = machine_state()
    directory = tmp_path / "cluster"
    state: dict = {"processes": {}, "supervisor_pid": -1}
    try:
        up = localcluster(
            "up", "--nodes", "1", "--real-nodes", "1", "--timeout", "240", "--dir", str(directory)
        )
        state = json.loads((directory / "state.json").read_text())
        assert up.returncode == 0, up.stderr + _fatal_lines(directory)
        env = {**os.environ, "KUBECONFIG": state["kubeconfig"]}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sleeper", "namespace": "default"},
            "spec": {
                "nodeName": "real-0",
                "containers": [{"name": "pause", "image": f"{state['registry']}/pause:3.10"}],
            },
        }
        subprocess.run(
            ["kubectl", "apply", "-f", "-"], input=json.dumps(pod), env=env, check=True,
            capture_output=True, text=True,
        )  # fmt: skip
        subprocess.run(
            ["kubectl", "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=120s"],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        during = machine_state()
        record = HostChanges.load(directory)
        assert record is not None
        ours = record.data
        if supervisor == "killed before down":
            # No cleanup by the supervisor: the kubelet and containerd get SIGTERM from the
            # kernel (they die with it), the shims and the containers stay for `down` to find.
            os.kill(state["supervisor_pid"], signal.SIGKILL)
            wait_until(lambda: not pid_alive(state["supervisor_pid"]), 30, "the supervisor to die")
    finally:
        down = localcluster("down", "--dir", str(directory))
    assert down.returncode == 0, down.stdout + down.stderr
    after = machine_state()

    def mine(key: str, item: str) -> bool:
        """Of this cluster (not of another one someone runs on the machine meanwhile)."""
        if key == "mounts":
            return any(item == d or item.startswith(d + "/") for d in ours["directories"])
        if key == "cgroups":
            return any(item.endswith(root) or root + "/" in item for root in ours["cgroup_roots"])
        if key == "links":  # "name" or "name master"
            return any(part in ours["links"] for part in item.split())
        return any(address.split("/")[0] in item for address in ours["addresses"])

    for key in ("mounts", "cgroups", "links", "addresses"):
        added = {item for item in set(during[key]) - set(before[key]) if mine(key, item)}
        assert added, f"the real node changed no {key}: nothing was checked"
        if key == "links":  # by name: a veth left behind has lost its bridge
            left = {i.split()[0] for i in added} & {i.split()[0] for i in after[key]}
        else:
            left = added & set(after[key])
        assert not left, (key, sorted(left))
    assert after["sysctls"] == before["sysctls"]
    pids = [p["pid"] for p in state["processes"].values()] + [state["supervisor_pid"]]
    wait_until(lambda: not [pid for pid in pids if pid_alive(pid)], 30, "every process to exit")
    assert not directory.exists()
