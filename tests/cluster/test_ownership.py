"""Ownership by identity on the real control plane: a puller never changes or deletes a
DaemonSet that another object owns, whatever its name and labels, and says who owns it.

The documented installs collide with no malice at all: §3.6.1's templates (a Deployment
`kubernetes-image-puller` keeping DaemonSet `kubernetes-image-puller`) and §3.6.5's resource
(default `daemonsetName`, the same name) in one namespace. Whichever came first keeps the
DaemonSet; the other reports `NameConflict` naming the owner.
"""

from __future__ import annotations

import json
import threading

import pytest
from kubernetes import client, watch

from imagepuller.resource import GROUP, PLURAL, VERSION
from tests.apiobjects import read_or_none
from tests.cluster.conftest import (
    DOC_RESOURCE,
    apply_documented_resource,
    kubectl,
)
from tests.cluster.test_operator import condition, get, pod_uids, puller, ready_status
from tests.waiting import wait_until

pytestmark = pytest.mark.usefixtures("crd")

DS = "kubernetes-image-puller"
TEMPLATE_IMAGES = "a=quay.io/eclipse/che-java17-maven:next;"
OTHER_IMAGES = "node=docker.io/library/node:20-alpine;"


def owner_of(ds) -> tuple[str, str, str]:
    (ref,) = ds.metadata.owner_references
    return ref.kind, ref.name, ref.uid


def snapshot(ds) -> tuple:
    """What a takeover would change: identity, owner, images and init image."""
    spec = ds.spec.template.spec
    return (
        ds.metadata.uid,
        owner_of(ds),
        [(c.name, c.image) for c in spec.containers],
        [c.image for c in spec.init_containers],
    )


def warning_events(cluster, namespace: str, reason: str) -> list[dict]:
    events = json.loads(kubectl(cluster, "-n", namespace, "get", "events", "-o", "json"))
    return [e for e in events["items"] if e["reason"] == reason and e["type"] == "Warning"]


def wait_for_warning(cluster, namespace: str, reason: str, about: dict[str, str], what: str):
    """Wait for a Warning Event ``reason`` whose involvedObject has the fields of ``about``."""
    wait_until(
        lambda: any(
            all(e["involvedObject"].get(k) == v for k, v in about.items())
            for e in warning_events(cluster, namespace, reason)
        ),
        30,
        what,
    )


def create(custom, namespace: str, name: str, **spec: str) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, puller(name, **spec))


def template_puller_ready(apps, owner_deployment, start_controller, namespace):
    """§3.6.1's puller: `imagepuller run` keeping the DaemonSet its Deployment owns."""
    controller = start_controller(IMAGES=TEMPLATE_IMAGES, KIP_IMAGE="quay.io/kip/template:1")
    controller.wait_for("daemonset_ready", 60)
    ds = apps.read_namespaced_daemon_set(DS, namespace)
    assert owner_of(ds) == ("Deployment", DS, owner_deployment.metadata.uid)
    return controller, ds


def test_the_documented_resource_never_takes_the_template_pullers_daemonset(
    cluster, apps, custom, operators, owner_deployment, start_controller, namespace
):
    controller, before = template_puller_ready(apps, owner_deployment, start_controller, namespace)
    apply_documented_resource(cluster, namespace)
    operator = operators(namespace)
    conflict = wait_until(
        lambda: (
            condition(r := get(custom, namespace, DOC_RESOURCE), "Ready").get("reason")
            == "NameConflict"
            and r
        ),
        60,
        "NameConflict on the resource",
    )
    message = condition(conflict, "Ready")["message"]
    assert f"Deployment {DS}" in message and owner_deployment.metadata.uid in message
    assert condition(conflict, "Ready")["status"] == "False"
    # The operator restarted (a new leader) still leaves it alone.
    operator.kill()
    operators(namespace).wait_for("daemonset_in_the_way", 60)
    ds = apps.read_namespaced_daemon_set(DS, namespace)
    assert snapshot(ds) == snapshot(before)  # same object, owner, images and init image
    warned = warning_events(cluster, namespace, "NameConflict")
    assert any(e["involvedObject"]["name"] == DOC_RESOURCE for e in warned), warned
    # The template puller kept it all along: it never saw it taken.
    assert not [line for line in controller.lines if "another_controller" in line]
    # Deleting the resource deletes nothing of the template puller's.
    kubectl(cluster, "-n", namespace, "delete", PLURAL, DOC_RESOURCE, "--wait=true")
    assert snapshot(apps.read_namespaced_daemon_set(DS, namespace)) == snapshot(before)


def test_the_template_puller_never_takes_the_documented_resources_daemonset(
    cluster, apps, custom, operators, owner_deployment, start_controller, namespace
):
    apply_documented_resource(cluster, namespace)
    operators(namespace)
    resource = ready_status(custom, namespace, DOC_RESOURCE, 3)
    before = apps.read_namespaced_daemon_set(DS, namespace)
    assert owner_of(before) == ("KubernetesImagePuller", DOC_RESOURCE, resource["metadata"]["uid"])
    controller = start_controller(IMAGES=TEMPLATE_IMAGES, KIP_IMAGE="quay.io/kip/template:1")
    refused = controller.wait_for("daemonset_in_the_way", 60)
    assert f"KubernetesImagePuller {DOC_RESOURCE}" in refused["error"]
    wait_for_warning(
        cluster,
        namespace,
        "NameConflict",
        {"kind": "Deployment"},
        "a NameConflict Warning on the template puller's Deployment",
    )
    assert snapshot(apps.read_namespaced_daemon_set(DS, namespace)) == snapshot(before)
    assert condition(get(custom, namespace, DOC_RESOURCE), "Ready")["status"] == "True"


class DaemonSetHistory:
    """Every version of one DaemonSet name the API server sends, from now on: (uid, owner
    uids). What a takeover leaves nowhere in the final state, it leaves here."""

    def __init__(self, api_client, namespace: str, name: str):
        self.apps = client.AppsV1Api(api_client)
        self.namespace, self.name = namespace, name
        self.versions: list[tuple[str, tuple[str, ...]]] = []
        self._watch = watch.Watch()
        self._stopping = False
        self.failed: Exception | None = None
        listed = self.apps.list_namespaced_daemon_set(namespace)
        self._from = listed.metadata.resource_version
        for item in listed.items:
            self._record(item)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _record(self, ds) -> None:
        if ds.metadata.name == self.name:
            owners = tuple(r.uid for r in ds.metadata.owner_references or [])
            self.versions.append((ds.metadata.uid, owners))

    def _run(self) -> None:
        try:
            for event in self._watch.stream(
                self.apps.list_namespaced_daemon_set,
                self.namespace,
                resource_version=self._from,
                timeout_seconds=300,
            ):
                self._record(event["object"])
        except Exception as err:  # noqa: BLE001 - told by stop(), unless we stopped it
            if not self._stopping:
                self.failed = err

    def stop(self) -> None:
        """Stop watching; fail if the history is not whole (the watch broke before)."""
        self._stopping = True
        self._watch.stop()
        assert self.failed is None, f"the DaemonSet watch broke: {self.failed!r}"


def test_a_renamed_resource_and_a_newcomer_never_adopt_or_delete_each_others_daemonset(
    api_client, apps, custom, operators, namespace
):
    create(custom, namespace, "a", images=TEMPLATE_IMAGES, daemonsetName="x")
    operators(namespace)
    a = ready_status(custom, namespace, "a", 3)
    first_x = apps.read_namespaced_daemon_set("x", namespace).metadata.uid
    history = DaemonSetHistory(api_client, namespace, "x")
    try:
        create(custom, namespace, "b", images=OTHER_IMAGES, daemonsetName="x")
        wait_until(
            lambda: condition(get(custom, namespace, "b"), "Ready").get("reason") == "NameConflict",
            60,
            "b told that x is a's",
        )
        current = get(custom, namespace, "a")
        current["spec"]["daemonsetName"] = "y"  # a moves to y; x goes once y holds the images
        custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "a", current)
        b = ready_status(custom, namespace, "b", 3)
        ready_status(custom, namespace, "a", 3)
        x = wait_until(
            lambda: (
                (d := read_or_none(apps.read_namespaced_daemon_set, "x", namespace))
                and d.status.number_available == 3
                and d
            ),
            60,
            "b's own x holding on every node",
        )
    finally:
        history.stop()
    b_uid, a_uid = b["metadata"]["uid"], a["metadata"]["uid"]
    assert x.metadata.uid != first_x
    assert owner_of(x)[2] == b_uid
    # Never a version of a's DaemonSet owned by b (an adoption), nor b's deleted by a.
    assert not [v for v in history.versions if v[0] == first_x and b_uid in v[1]], history.versions
    assert {owners for uid, owners in history.versions if uid == first_x} == {(a_uid,)}
    assert apps.read_namespaced_daemon_set("y", namespace).metadata.owner_references[0].uid == (
        a_uid
    )


# --- edits the API refuses are reported and retried, never dropped ---------------------------

BLOCKED = "quay.io/blocked/"


def daemonset_admission_denied(api_client, namespace: str) -> bool:
    """A server-side dry run of a DaemonSet with a blocked image is refused (the policy is in
    force: its registration is asynchronous)."""
    body = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "probe"},
        "spec": {
            "selector": {"matchLabels": {"p": "p"}},
            "template": {
                "metadata": {"labels": {"p": "p"}},
                "spec": {"containers": [{"name": "c", "image": f"{BLOCKED}x:1"}]},
            },
        },
    }
    try:
        client.AppsV1Api(api_client).create_namespaced_daemon_set(namespace, body, dry_run="All")
    except client.ApiException as err:
        return err.status == 422
    return False


def test_edits_the_api_refuses_are_reported_and_retried_until_they_apply(
    cluster, api_client, apps, core, custom, operators, namespace
):
    create(custom, namespace, "cache", images=TEMPLATE_IMAGES)
    operators(namespace)
    ready_status(custom, namespace, "cache", 3)
    pods = pod_uids(core, namespace)

    # Accepted by our checks, refused by the API: an In requirement without values.
    current = get(custom, namespace, "cache")
    current["spec"]["affinity"] = json.dumps(
        {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "In"}]}]}}}
    )  # fmt: skip
    custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "cache", current)
    refused = wait_until(
        lambda: (
            (r := get(custom, namespace, "cache"))["status"].get("observedGeneration") == 2
            and condition(r, "Degraded").get("status") == "True"
            and r
        ),
        60,
        "the refused generation 2 observed and reported",
    )
    assert condition(refused, "Degraded")["reason"] == "InvalidSpec"
    assert "Required value" in condition(refused, "Degraded")["message"]
    assert condition(refused, "Ready")["observedGeneration"] == 1  # what runs is generation 1
    wait_for_warning(
        cluster, namespace, "ConfigRejected", {"name": "cache"}, "a ConfigRejected Warning"
    )

    # An admission policy refuses the next edit; once it is gone, that very edit applies.
    policy = f"deny-blocked-{namespace}"
    admission = client.AdmissionregistrationV1Api(api_client)
    admission.create_validating_admission_policy(
        {
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["apps"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["daemonsets"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "object.spec.template.spec.containers.all(c, "
                        f"!c.image.startsWith('{BLOCKED}'))",
                        "message": "images under quay.io/blocked/ are not allowed here",
                    }
                ],
            },
        }  # fmt: skip
    )
    try:
        admission.create_validating_admission_policy_binding(
            {
                "metadata": {"name": policy},
                "spec": {
                    "policyName": policy,
                    "validationActions": ["Deny"],
                    "matchResources": {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": namespace}
                        }
                    },
                },
            }
        )
        wait_until(
            lambda: daemonset_admission_denied(api_client, namespace), 60, "the policy in force"
        )
        current = get(custom, namespace, "cache")
        current["spec"] = {"images": f"blocked={BLOCKED}x:1;"}
        custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "cache", current)
        blocked = wait_until(
            lambda: (
                (r := get(custom, namespace, "cache"))["status"].get("observedGeneration") == 3
                and "not allowed here" in condition(r, "Degraded").get("message", "")
                and r
            ),
            60,
            "generation 3 refused by the policy, reported",
        )
        assert condition(blocked, "Degraded")["status"] == "True"
        ds = apps.read_namespaced_daemon_set(DS, namespace)
        assert [c.image for c in ds.spec.template.spec.containers] == [
            "quay.io/eclipse/che-java17-maven:next"
        ]
        assert pod_uids(core, namespace) == pods  # nothing that runs was touched
    finally:
        admission.delete_validating_admission_policy_binding(policy)
        admission.delete_validating_admission_policy(policy)
    applied = wait_until(
        lambda: (
            (r := get(custom, namespace, "cache"))["status"].get("observedGeneration") == 3
            and condition(r, "Ready").get("status") == "True"
            and condition(r, "Degraded").get("status") == "False"
            and r
        ),
        120,
        "generation 3 applied once the policy is gone, with no new edit",
    )
    assert applied["metadata"]["generation"] == 3
    ds = apps.read_namespaced_daemon_set(DS, namespace)
    assert [c.image for c in ds.spec.template.spec.containers] == [f"{BLOCKED}x:1"]


def test_a_resource_deleted_with_cascade_orphan_leaves_its_daemonset(
    cluster, apps, custom, operators, namespace
):
    create(custom, namespace, "cache", images=TEMPLATE_IMAGES)
    operator = operators(namespace)
    ready_status(custom, namespace, "cache", 3)
    uid = apps.read_namespaced_daemon_set(DS, namespace).metadata.uid
    kubectl(cluster, "-n", namespace, "delete", PLURAL, "cache", "--cascade=orphan", "--wait=true")
    stopped = operator.wait_for("shutdown", 60)  # the resource's controller has ended
    assert stopped["deleted"] is False
    ds = apps.read_namespaced_daemon_set(DS, namespace)
    assert ds.metadata.uid == uid and not ds.metadata.owner_references
    assert ds.status.number_available == 3  # still holding on every node


def test_an_invalid_edit_of_an_older_resource_takes_no_name_from_a_newer_one(
    core, custom, operators, namespace
):
    create(custom, namespace, "older", images=TEMPLATE_IMAGES, daemonsetName="y")
    operator = operators(namespace)
    ready_status(custom, namespace, "older", 3)
    create(custom, namespace, "newer", images=OTHER_IMAGES, daemonsetName="x")
    ready_status(custom, namespace, "newer", 3)
    current = get(custom, namespace, "older")
    current["spec"].update(daemonsetName="x", cachingMemoryLimit="lots")  # invalid as a whole
    custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "older", current)
    # One pass of the operator judges the names, stops the pullers in conflict, then reads the
    # edit (config_rejected): by then a false conflict would have stopped the newer's puller.
    operator.wait_for("config_rejected", 60)
    stopped = [e for e in operator.events if e["event"] == "puller_stopped"]
    assert not stopped, stopped
    newer = get(custom, namespace, "newer")
    assert condition(newer, "Ready")["reason"] == "AllImagesCached", newer["status"]
