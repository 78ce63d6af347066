"""Split brain: a leader paused past its Lease (SIGSTOP, a long GC pause, a frozen VM) sends no
write when it runs again.

`imagepuller operator` runs as a process under a ServiceAccount token of its own, so the API
server's audit log (localcluster's policy: every write made as a ServiceAccount) tells exactly
which requests each replica sent. Per round: the leader serves some KubernetesImagePuller
resources, a second replica stands by; the leader is frozen; while it is, every resource is
edited and every DaemonSet's refresh comes due (work the frozen leader will find waiting); the
standby takes the Lease over; the old leader is thawed. Whatever it sent after the freeze is
counted from the audit log: it must be nothing, round after round (the successor is the next
round's leader).
"""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from imagepuller.resource import GROUP, PLURAL, VERSION
from tests.cluster.conftest import make_refresh_due
from tests.cluster.test_install import serviceaccount_kubeconfig
from tests.cluster.test_operator import puller
from tests.controller_process import ControllerProcess, operator_process
from tests.waiting import wait_until

ROUNDS = 4
RESOURCES = 3
IMAGE_SETS = (
    "java=quay.io/eclipse/che-java17-maven:next;",
    "java=quay.io/eclipse/che-java17-maven:next;node=docker.io/library/node:20-alpine;",
)


class Replica:
    """One `imagepuller operator` process, as its own ServiceAccount."""

    def __init__(self, name: str, namespace: str, process: ControllerProcess):
        self.name = name
        self.user = f"system:serviceaccount:{namespace}:{name}"
        self.process = process


@pytest.fixture
def replicas(cluster, api_client, namespace, tmp_path):
    """``start(name)``: a ServiceAccount ``name`` with every right in the test's namespace (a
    RoleBinding to cluster-admin), a kubeconfig with its token, and `imagepuller operator` run
    with it, watching the test's namespace and keeping its Lease there."""
    core = client.CoreV1Api(api_client)
    rbac = client.RbacAuthorizationV1Api(api_client)
    started: list[Replica] = []

    def start(name: str) -> Replica:
        core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            },
        )
        kubeconfig = serviceaccount_kubeconfig(
            cluster, api_client, namespace, name, tmp_path / f"{name}.kubeconfig"
        )
        process = operator_process(kubeconfig, namespace, namespace, POD_NAME=name)
        replica = Replica(name, namespace, process)
        started.append(replica)
        return replica

    yield start
    for replica in started:
        replica.process.kill()


def audited_writes(cluster, user: str, since: float) -> list[dict[str, Any]]:
    """The writes ``user`` sent that the API server received after ``since`` (epoch seconds)."""
    found = []
    for line in Path(cluster.audit_log).read_text().splitlines():
        entry = json.loads(line)
        if entry["user"]["username"] != user:
            continue
        received = datetime.fromisoformat(entry["requestReceivedTimestamp"]).timestamp()
        if received >= since:
            found.append(entry)
    return found


def summary(entry: dict[str, Any]) -> str:
    ref = entry.get("objectRef") or {}
    what = "/".join(p for p in (ref.get("resource"), ref.get("subresource")) if p)
    return (
        f"{entry['verb']} {what} {ref.get('name', '')} -> "
        f"{(entry.get('responseStatus') or {}).get('code')} "
        f"at {entry['requestReceivedTimestamp']}"
    )


def resources(custom, namespace) -> list[dict[str, Any]]:
    return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]


def all_ready(custom, namespace) -> bool:
    """Every resource's status is Ready for its current generation."""
    items = resources(custom, namespace)
    return len(items) == RESOURCES and all(
        (status := item.get("status") or {}).get("observedGeneration")
        == item["metadata"]["generation"]
        and any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
        )
        for item in items
    )


def frozen(pid: int) -> bool:
    """The process is stopped (state T): it runs no more code, sends no more requests."""
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state in ("T", "t")


def test_a_leader_paused_past_its_lease_sends_no_write_when_it_runs_again(
    crd, cluster, apps, namespace, api_client, replicas
):
    custom = client.CustomObjectsApi(api_client)
    leader = replicas("operator-0")
    leader.process.wait_for("leader_elected", 60)
    for i in range(RESOURCES):
        body = puller(f"cache-{i}", images=IMAGE_SETS[0], daemonsetName=f"cache-{i}")
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    counts: list[int] = []
    sent_after_thaw: list[list[str]] = []
    refused: list[int] = []
    tracebacks: list[str] = []
    for round_ in range(ROUNDS):
        wait_until(lambda: all_ready(custom, namespace), 120, "every resource Ready")
        standby = replicas(f"operator-{round_ + 1}")
        standby.process.wait_for("leader_waiting", 60)
        # The instrument works: the leader's own writes (its Lease renewals) are there.
        assert any(
            (entry.get("objectRef") or {}).get("resource") == "leases"
            for entry in audited_writes(cluster, leader.user, 0)
        ), "no Lease renewal of the leader in the audit log"

        pid = leader.process.process.pid
        leader.process.process.send_signal(signal.SIGSTOP)
        wait_until(lambda pid=pid: frozen(pid), 10, "the leader to be frozen")
        frozen_at = time.time()  # nothing it sends can arrive before this
        # Work the frozen leader will find waiting when it runs again: an edit of every
        # resource, and every DaemonSet's refresh due.
        for item in resources(custom, namespace):
            name = item["metadata"]["name"]
            images = IMAGE_SETS[(round_ + 1) % 2]
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, {"spec": {"images": images}}
            )
            make_refresh_due(apps, namespace, name)
        standby.process.wait_for("leader_elected", 60)  # after the Lease's duration

        leader.process.process.send_signal(signal.SIGCONT)
        code = leader.process.process.wait(timeout=60)  # it sees the Lease lost and exits
        assert code == 1, "".join(leader.process.lines[-30:])
        writes = audited_writes(cluster, leader.user, frozen_at)
        counts.append(len(writes))
        sent_after_thaw.append([summary(entry) for entry in writes])
        refused.append(sum('"write_refused"' in line for line in leader.process.lines))
        log_text = "".join(leader.process.lines)
        if "apierrors.NotLeader" in log_text:  # only a traceback names the class
            tracebacks.append(log_text)
        leader = standby

    print(f"writes after thawing, per round: {counts}; refused before sending: {refused}")
    assert counts == [0] * ROUNDS, json.dumps(sent_after_thaw, indent=1)
    # The workers stopped as after any loss: no traceback from one refused mid-write.
    assert tracebacks == []
