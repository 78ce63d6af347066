"""Operator mode on the real control plane: `imagepuller operator` as a process serving
KubernetesImagePuller resources, every claim read back from the API.

Each test's operator watches only that test's namespaces (WATCH_NAMESPACES) and keeps its Lease
in the test's namespace, so tests never see each other's resources.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from kubernetes import client

from imagepuller.resource import GROUP, PLURAL, VERSION
from localcluster.process import thread_count
from tests.apiobjects import read_or_none
from tests.cluster.conftest import (
    CRD,
    DOC_IMAGES,
    apply_documented_resource,
    fixed_namespace,
    kubectl,
)
from tests.controller_process import operator_process
from tests.holding import HoldingWatcher
from tests.waiting import wait_until

IMAGES = DOC_IMAGES
DS = "kubernetes-image-puller"
SELECTOR = f"app.kubernetes.io/instance={DS},app.kubernetes.io/component=image-cache"
DOC_NAMESPACE = "k8s-image-puller"


@pytest.fixture
def more_namespaces(api_client):
    core = client.CoreV1Api(api_client)
    made: list[str] = []

    def make() -> str:
        name = f"t-{uuid.uuid4().hex[:8]}"
        core.create_namespace({"metadata": {"name": name}})
        wait_until(
            lambda: read_or_none(core.read_namespaced_service_account, "default", name),
            30,
            f"ServiceAccount default in {name}",
        )
        made.append(name)
        return name

    yield make
    for name in made:
        core.delete_namespace(name)


def puller(name: str, *, labels: dict | None = None, **spec: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "KubernetesImagePuller",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


def get(custom, namespace: str, name: str) -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def condition(resource: dict, kind: str) -> dict:
    for item in (resource.get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return item
    return {}


def ready_status(custom, namespace, name, nodes: int):
    """The resource once its status says Ready on ``nodes`` nodes."""
    return wait_until(
        lambda: (
            (r := get(custom, namespace, name))
            and condition(r, "Ready").get("status") == "True"
            and r["status"]["nodes"] == {"desired": nodes, "ready": nodes}
            and r
        ),
        90,
        f"{namespace}/{name} Ready on {nodes} nodes",
    )


def pod_uids(core, namespace, ds=DS) -> set[str]:
    selector = f"app.kubernetes.io/instance={ds},app.kubernetes.io/component=image-cache"
    return {
        p.metadata.uid
        for p in core.list_namespaced_pod(namespace, label_selector=selector).items
        if p.metadata.deletion_timestamp is None
    }


@pytest.fixture
def doc_namespace(api_client):
    """Namespace k8s-image-puller, as §3.6.5 creates it."""
    with fixed_namespace(api_client, DOC_NAMESPACE) as name:
        yield name


# --- tests -----------------------------------------------------------------------------------


def test_the_documentations_extra_resource_is_cached_on_every_node(
    crd, cluster, apps, custom, operators, doc_namespace
):
    kubectl(cluster, "create", "namespace", doc_namespace)
    apply_documented_resource(cluster, doc_namespace)
    operator = operators(doc_namespace)
    operator.wait_for("leader_elected", 30)
    resource = ready_status(custom, doc_namespace, "k8s-image-puller-images", 3)
    ds = apps.read_namespaced_daemon_set(DS, doc_namespace)
    assert ds.status.number_available == ds.status.desired_number_scheduled == 3
    (owner,) = ds.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == (
        "KubernetesImagePuller",
        "k8s-image-puller-images",
        resource["metadata"]["uid"],
    )
    assert resource["status"]["images"] == 2
    assert resource["metadata"]["generation"] == 1  # the spec was never written
    table = kubectl(cluster, "-n", doc_namespace, "get", PLURAL)
    (row,) = [line for line in table.splitlines() if line.startswith("k8s-image-puller-images")]
    assert row.split()[1:5] == ["True", "3", "3", "2"]


def test_the_che_operators_flow_update_rolls_without_emptying_a_node_and_delete_cleans_up(
    crd, cluster, apps, core, api_client, custom, operators, namespace
):
    labels = {
        "app.kubernetes.io/component": "kubernetes-image-puller",
        "app.kubernetes.io/part-of": "che.eclipse.org",
        "app.kubernetes.io/managed-by": "devspaces-operator",
    }
    spec = {
        "configMapName": "k8s-image-puller",
        "deploymentName": "kubernetes-image-puller",
        "imagePullerImage": "quay.io/eclipse/kubernetes-image-puller:next",
        "images": IMAGES,
    }
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, puller("devspaces-image-puller", labels=labels, **spec)
    )
    operator = operators(namespace)
    ready = ready_status(custom, namespace, "devspaces-image-puller", 3)
    assert ready["status"]["imagePullerImage"] == "quay.io/eclipse/kubernetes-image-puller:next"
    ds = apps.read_namespaced_daemon_set(DS, namespace)
    assert ds.spec.template.spec.init_containers[0].image == spec["imagePullerImage"]
    uid, before = ds.metadata.uid, pod_uids(core, namespace)

    # The Che operator's full Update: the whole object back with other images.
    watcher = HoldingWatcher(api_client, namespace, SELECTOR).start_and_wait()
    try:
        current = get(custom, namespace, "devspaces-image-puller")
        new_images = "code=quay.io/che-incubator/che-code:latest;"
        current["spec"] = {**spec, "images": new_images}
        custom.replace_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "devspaces-image-puller", current
        )
        operator.wait_for("daemonset_updated", 30)
        wait_until(
            lambda: (
                (r := get(custom, namespace, "devspaces-image-puller"))["status"].get(
                    "observedGeneration"
                )
                == 2
                and condition(r, "Ready").get("status") == "True"
                and r["status"]["images"] == 1
            ),
            90,
            "the new images held everywhere",
        )
    finally:
        watcher.stop()
    fractions = watcher.fractions({"node-0", "node-1", "node-2"})
    assert min(fractions) == 1.0  # no node left empty during the rollout
    ds = apps.read_namespaced_daemon_set(DS, namespace)
    assert ds.metadata.uid == uid
    assert [c.image for c in ds.spec.template.spec.containers] == [
        "quay.io/che-incubator/che-code:latest"
    ]
    assert not pod_uids(core, namespace) & before  # every pod rolled
    final = get(custom, namespace, "devspaces-image-puller")
    assert final["spec"] == {**spec, "images": new_images}  # never written by the operator
    assert final["metadata"]["generation"] == 2  # the create and the Che operator's update
    assert final["metadata"]["labels"] == labels

    # enable: false deletes the resource; its DaemonSet goes with it.
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "devspaces-image-puller"
    )
    wait_until(
        lambda: read_or_none(apps.read_namespaced_daemon_set, DS, namespace) is None,
        60,
        "the DaemonSet removed with its resource",
    )


def test_an_invalid_spec_and_a_name_conflict_change_nothing_that_runs(
    crd, cluster, apps, core, custom, operators, namespace
):
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, puller("first", images=IMAGES)
    )
    operators(namespace)
    ready_status(custom, namespace, "first", 3)
    before = pod_uids(core, namespace)

    # A second resource wanting the same DaemonSet name: the newer one is told, nothing moves.
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, puller("second", images="x=quay.io/x/other:1;")
    )
    second = wait_until(
        lambda: (
            condition(r := get(custom, namespace, "second"), "Ready").get("reason")
            == "NameConflict"
            and r
        ),
        60,
        "NameConflict on the newer resource",
    )
    assert condition(second, "Ready")["status"] == "False"
    assert "first" in condition(second, "Ready")["message"]
    assert condition(get(custom, namespace, "first"), "Ready")["status"] == "True"

    # An invalid edit of the first: every problem in the status and an Event; nothing changes.
    current = get(custom, namespace, "first")
    current["spec"] = {
        "images": "a=quay.io/a:1;a=quay.io/b:1",
        "cachingMemoryLimit": "lots",
    }
    custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "first", current)
    first = wait_until(
        lambda: (
            condition(r := get(custom, namespace, "first"), "Degraded").get("reason")
            == "InvalidSpec"
            and r
        ),
        60,
        "InvalidSpec in the status",
    )
    message = condition(first, "Degraded")["message"]
    assert "spec.images entry 2" in message and "spec.cachingMemoryLimit='lots'" in message
    events = json.loads(kubectl(cluster, "-n", namespace, "get", "events", "-o", "json"))["items"]
    invalid = [e for e in events if e["reason"] == "InvalidSpec"]
    assert invalid and invalid[0]["involvedObject"]["name"] == "first"
    assert any(e["reason"] == "NameConflict" and e["involvedObject"]["name"] == "second"
               for e in events)  # fmt: skip
    ds = apps.read_namespaced_daemon_set(DS, namespace)
    assert [c.name for c in ds.spec.template.spec.containers] == ["java", "node"]
    assert pod_uids(core, namespace) == before  # not one pod replaced


def test_a_killed_leader_is_replaced_within_the_lease_and_no_pod_is_replaced(
    crd, cluster, apps, core, custom, operators, namespace
):
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, puller("cache", images=IMAGES)
    )
    first = operators(namespace)
    first.wait_for("leader_elected", 30)
    ready_status(custom, namespace, "cache", 3)
    second = operators(namespace)
    second.wait_for("leader_waiting", 30)
    before = pod_uids(core, namespace)
    generation = apps.read_namespaced_daemon_set(DS, namespace).metadata.generation

    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    elected = second.wait_for("leader_elected", 15 + 2 + 5)  # lease duration, retry, slack
    assert elected["_received"] - second.started > 0
    second.wait_for("daemonset_adopted", 30)
    ds = apps.read_namespaced_daemon_set(DS, namespace)
    assert ds.metadata.generation == generation  # taken over with an annotation, not updated
    assert pod_uids(core, namespace) == before

    # An operator restart (a graceful stop, a new process): nothing re-pulled either.
    assert second.stop() == 0
    third = operators(namespace)
    third.wait_for("leader_elected", 10)  # released on stop: at once, not after the lease
    third.wait_for("daemonset_adopted", 30)
    assert apps.read_namespaced_daemon_set(DS, namespace).metadata.generation == generation
    assert pod_uids(core, namespace) == before


def test_threads_grow_with_namespaces_watched_not_with_resources(
    crd, custom, operators, namespace, more_namespaces
):
    """One work queue serves every resource: a resource adds no thread and no watch of its
    own; a namespace that has resources adds one DaemonSet watch (its thread)."""
    other = more_namespaces()
    operator = operators(namespace, other)
    operator.wait_for("leader_elected", 30)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, puller("first", images=IMAGES, daemonsetName="first")
    )
    ready_status(custom, namespace, "first", 3)
    pid = operator.process.pid
    one = thread_count(pid)
    assert one is not None
    names = ["second", "third", "fourth"]
    for name in names:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, puller(name, images=IMAGES, daemonsetName=name)
        )
    for name in ["first", "second"]:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, other, PLURAL, puller(name, images=IMAGES, daemonsetName=name)
        )
    for name in names:
        ready_status(custom, namespace, name, 3)
    for name in ["first", "second"]:
        ready_status(custom, other, name, 3)
    # Six resources in two namespaces: one thread more than with one resource, the DaemonSet
    # watch of the second namespace (a thread and a watch per resource would make it 10).
    wait_until(
        lambda: thread_count(pid) == one + 1, 30, f"{one + 1} threads, not {thread_count(pid)}"
    )
    # Deleting the second namespace's resources ends its watch.
    for name in ["first", "second"]:
        custom.delete_namespaced_custom_object(GROUP, VERSION, other, PLURAL, name)
    wait_until(lambda: thread_count(pid) <= one, 90, f"{one} threads, not {thread_count(pid)}")


def test_many_resources_each_status_tells_its_own_truth(
    crd, cluster, apps, core, custom, operators, namespace, more_namespaces, add_node
):
    add_node("op-a", labels={"cache": "yes"})
    add_node("op-b", labels={"cache": "yes"})  # 5 nodes, 2 labelled
    others = [more_namespaces(), more_namespaces()]
    for ns in others:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, puller("cache", images=IMAGES)
        )
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL,
        puller("selected", images=IMAGES, daemonsetName="selected",
               nodeSelector='{"cache": "yes"}'),
    )  # fmt: skip
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL,
        puller("broken", images="bad=registry.invalid/team/tool:1;", daemonsetName="broken"),
    )  # fmt: skip
    operators(namespace, *others)

    for ns in others:
        ready_status(custom, ns, "cache", 5)
    selected = ready_status(custom, namespace, "selected", 2)
    assert selected["status"]["images"] == 2
    broken = wait_until(
        lambda: (
            condition(r := get(custom, namespace, "broken"), "Degraded").get("reason")
            == "ImagesNotCached"
            and r["status"]["failuresTotal"] == 5
            and r
        ),
        90,
        "the unpullable image reported on each of the 5 nodes",
    )
    assert condition(broken, "Ready")["status"] == "False"
    assert broken["status"]["nodes"]["ready"] == 0
    assert {f["node"] for f in broken["status"]["failures"]} == {
        "node-0", "node-1", "node-2", "op-a", "op-b"
    }  # fmt: skip
    reasons = {f["reason"] for f in broken["status"]["failures"]}
    assert reasons <= {"ErrImagePull", "ImagePullBackOff"} and reasons
    assert all(f["image"] == "registry.invalid/team/tool:1" for f in broken["status"]["failures"])

    # An edit of one resource replaces no pod of another.
    untouched = {ns: pod_uids(core, ns, "kubernetes-image-puller") for ns in others}
    untouched["selected"] = pod_uids(core, namespace, "selected")
    current = get(custom, others[0], "cache")
    current["spec"]["images"] = "code=quay.io/che-incubator/che-code:latest;"
    custom.replace_namespaced_custom_object(GROUP, VERSION, others[0], PLURAL, "cache", current)
    wait_until(
        lambda: (
            get(custom, others[0], "cache")["status"].get("observedGeneration") == 2
            and condition(get(custom, others[0], "cache"), "Ready").get("status") == "True"
        ),
        90,
        "the edited resource rolled",
    )
    assert pod_uids(core, others[1], "kubernetes-image-puller") == untouched[others[1]]
    assert pod_uids(core, namespace, "selected") == untouched["selected"]


# As installed: the operator as its own ServiceAccount, with exactly its ClusterRole.
OPERATOR_NS = "imagepuller-operator"
OPERATOR_ALLOWED = [
    ("get", f"{PLURAL}.{GROUP}"), ("list", f"{PLURAL}.{GROUP}"), ("watch", f"{PLURAL}.{GROUP}"),
    ("patch", f"{PLURAL}.{GROUP}/status"),
    ("get", "daemonsets.apps"), ("list", "daemonsets.apps"), ("watch", "daemonsets.apps"),
    ("create", "daemonsets.apps"), ("update", "daemonsets.apps"), ("patch", "daemonsets.apps"),
    ("delete", "daemonsets.apps"), ("list", "pods"), ("list", "events"),
    ("create", "events.events.k8s.io"), ("patch", "events.events.k8s.io"),
]  # fmt: skip
OPERATOR_DENIED = [
    ("create", f"{PLURAL}.{GROUP}"), ("update", f"{PLURAL}.{GROUP}"),
    ("patch", f"{PLURAL}.{GROUP}"), ("delete", f"{PLURAL}.{GROUP}"),
    ("update", f"{PLURAL}.{GROUP}/status"), ("get", "pods"), ("watch", "pods"),
    ("create", "deployments.apps"), ("get", "deployments.apps"), ("create", "configmaps"),
    ("get", "secrets"), ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "serviceaccounts"), ("get", "leases.coordination.k8s.io"),
    ("create", "events"), ("deletecollection", "daemonsets.apps"),
]  # fmt: skip
LEASE_ALLOWED = [("get", "leases.coordination.k8s.io"), ("create", "leases.coordination.k8s.io"),
                 ("update", "leases.coordination.k8s.io")]  # fmt: skip


def can_i(kubeconfig: Path, verb: str, resource: str, namespace: str) -> str:
    resource, _, subresource = resource.partition("/")
    extra = [f"--subresource={subresource}"] if subresource else []
    return subprocess.run(
        ["kubectl", "auth", "can-i", verb, resource, "-n", namespace, *extra],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.strip()


@pytest.fixture
def operator_installed(crd, cluster, api_client):
    """`kubectl apply -k manifests/operator`; its namespace and cluster RBAC removed after
    (the CRD stays: other tests of this session use it)."""
    with fixed_namespace(api_client, OPERATOR_NS):
        kubectl(cluster, "apply", "-k", str(CRD.parent))
        try:
            yield OPERATOR_NS
        finally:
            # The admission policy first: without its ConfigMap (deleted with the namespace)
            # its binding would refuse every resource in the cluster, the admin's too.
            policy = "imagepuller-operator-kubernetesimagepullers"
            kubectl(cluster, "delete", "validatingadmissionpolicybinding,validatingadmissionpolicy",
                    policy, "--ignore-not-found")  # fmt: skip
            kubectl(cluster, "delete", "clusterrolebinding,clusterrole", "imagepuller-operator",
                    "--ignore-not-found")  # fmt: skip


def test_the_operator_runs_as_its_service_account_with_exactly_its_cluster_role(
    cluster, api_client, custom, operator_installed, namespace, tmp_path
):
    from tests.cluster.test_install import serviceaccount_kubeconfig

    kubeconfig = wait_until(
        lambda: (
            read_or_none(
                client.CoreV1Api(api_client).read_namespaced_service_account,
                "imagepuller-operator",
                operator_installed,
            )
            and serviceaccount_kubeconfig(
                cluster, api_client, operator_installed, "imagepuller-operator", tmp_path / "op"
            )
        ),
        30,
        "the operator's ServiceAccount",
    )
    for verb, resource in OPERATOR_ALLOWED:
        assert can_i(kubeconfig, verb, resource, namespace) == "yes", (verb, resource)
    for verb, resource in OPERATOR_DENIED:
        assert can_i(kubeconfig, verb, resource, namespace) == "no", (verb, resource)
    for verb, resource in LEASE_ALLOWED:
        assert can_i(kubeconfig, verb, resource, operator_installed) == "yes", (verb, resource)

    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, puller("cache", images=IMAGES)
    )
    process = operator_process(
        kubeconfig, namespace, operator_installed, POD_NAME="imagepuller-operator-test"
    )
    try:
        process.wait_for("leader_elected", 30)
        resource = ready_status(custom, namespace, "cache", 3)
        assert resource["status"]["images"] == 2
        bad = [
            e
            for e in process.events
            if e["event"]
            in ("api_forbidden", "api_error", "watch_failed", "event_not_recorded",
                "status_not_written", "lease_attempt_failed")
        ]  # fmt: skip
        assert not bad, bad
        assert process.stop() == 0
    finally:
        process.kill()
