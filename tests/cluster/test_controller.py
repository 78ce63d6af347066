"""The controller against the real control plane: `imagepuller run` as a process.

Each test gets a fresh namespace enforcing Pod Security `restricted`; the shared cluster has
three kwok nodes. Assertions are on what the API returns and on the controller's log events.
"""

from __future__ import annotations

import json
import signal
import time

import pytest
from kubernetes import client

from imagepuller.apierrors import Invalid
from imagepuller.apitransport import load_api_client
from imagepuller.config import load_config
from imagepuller.daemonset import build_daemonset
from imagepuller.kube import Kube
from tests.cluster.conftest import NAME, make_refresh_due, read_ds
from tests.waiting import wait_until


def test_daemonset_ready_on_every_node_in_a_restricted_namespace(
    start_controller, apps, core, namespace
):
    controller = start_controller()
    ready = controller.wait_for("daemonset_ready", 90)
    assert (ready["ready"], ready["desired"]) == (3, 3)

    ds = read_ds(apps, namespace)
    assert ds.status.desired_number_scheduled == 3
    assert ds.status.number_ready == 3
    assert ds.metadata.labels["app.kubernetes.io/managed-by"] == "imagepuller"
    assert ds.spec.template.spec.security_context.run_as_user == 65532  # plain Kubernetes
    pods = core.list_namespaced_pod(namespace).items
    assert sorted(p.spec.node_name for p in pods) == ["node-0", "node-1", "node-2"]
    for pod in pods:
        assert [c.name for c in pod.spec.containers] == ["java", "node"]
        assert pod.spec.automount_service_account_token is False
        assert all(c.ready for c in pod.status.container_statuses)
    # Progress was reported on the way.
    assert any(e["event"] == "daemonset_progress" for e in controller.events)


def test_node_selector_and_tolerations_choose_the_nodes(
    start_controller, apps, core, namespace, add_node
):
    add_node("pool-a", labels={"pool": "workspaces"})
    add_node("pool-b", labels={"pool": "workspaces"})
    add_node(
        "tainted",
        labels={"pool": "workspaces"},
        taints=[{"key": "dedicated", "value": "ide", "effect": "NoSchedule"}],
    )

    controller = start_controller(NODE_SELECTOR='{"pool": "workspaces"}')
    ready = controller.wait_for("daemonset_ready", 90)
    assert (ready["ready"], ready["desired"]) == (2, 2)
    pods = core.list_namespaced_pod(namespace).items
    assert sorted(p.spec.node_name for p in pods) == ["pool-a", "pool-b"]
    assert controller.stop() == 0

    tolerating = start_controller(
        NODE_SELECTOR='{"pool": "workspaces"}',
        TOLERATIONS='[{"key": "dedicated", "operator": "Equal", "value": "ide", '
        '"effect": "NoSchedule"}]',
    )
    ready = tolerating.wait_for("daemonset_ready", 90)
    assert (ready["ready"], ready["desired"]) == (3, 3)
    nodes = {
        p.spec.node_name
        for p in core.list_namespaced_pod(namespace).items
        if p.metadata.deletion_timestamp is None
    }
    assert nodes == {"pool-a", "pool-b", "tainted"}


def test_unpullable_image_ends_the_wait_with_node_image_and_reason(start_controller, namespace):
    controller = start_controller(
        IMAGES="good=quay.io/ok/image:1;bad=registry.invalid/missing/image:1",
        READY_TIMEOUT="8s",
    )
    summary = controller.wait_for("daemonset_not_ready", 60)
    assert summary["desired"] == 3 and summary["ready"] == 0
    failures = [e for e in controller.events if e["event"] == "image_not_cached"]
    while len(failures) < summary["failing"]:
        failures.append(controller.wait_for("image_not_cached", 5))
    bad = [f for f in failures if f["image"] == "registry.invalid/missing/image:1"]
    assert sorted(f["node"] for f in bad) == ["node-0", "node-1", "node-2"]
    assert {f["reason"] for f in bad} <= {"ErrImagePull", "ImagePullBackOff"}
    assert all(f["container"] == "bad" for f in bad)
    # It carries on: still running, and it still removes its DaemonSet when stopped.
    assert controller.process.poll() is None
    assert controller.stop() == 0


def test_daemonset_deleted_from_outside_is_back_within_5_seconds(start_controller, apps, namespace):
    controller = start_controller()
    controller.wait_for("daemonset_ready", 90)
    old_uid = read_ds(apps, namespace).metadata.uid

    apps.delete_namespaced_daemon_set(NAME, namespace)
    deleted_at = time.monotonic()
    new = wait_until(
        lambda: (ds := read_ds(apps, namespace)) is not None and ds.metadata.uid != old_uid and ds,
        5,
        "the DaemonSet to be recreated",
    )
    print(f"recreated {time.monotonic() - deleted_at:.2f}s after the external delete")
    assert new.metadata.labels["app.kubernetes.io/managed-by"] == "imagepuller"
    controller.wait_for("daemonset_deleted_externally", 5)


def test_recreate_strategy_refreshes_by_delete_and_create(start_controller, apps, namespace):
    # The Go original's way, kept as REFRESH_STRATEGY=recreate. 0.001 h = 3.6 s.
    controller = start_controller(CACHING_INTERVAL_HOURS="0.001", REFRESH_STRATEGY="recreate")
    first = controller.wait_for("daemonset_created", 60)
    controller.wait_for("refresh_due", 90)
    second = controller.wait_for("daemonset_created", 60)
    assert second["uid"] != first["uid"]
    controller.wait_for("daemonset_ready", 60)
    assert read_ds(apps, namespace).metadata.uid == second["uid"]


def test_sigterm_deletes_the_daemonset_and_exits_0(start_controller, apps, namespace):
    controller = start_controller()
    controller.wait_for("daemonset_ready", 90)
    assert read_ds(apps, namespace) is not None
    began = time.monotonic()
    assert controller.stop(signal.SIGTERM) == 0
    elapsed = time.monotonic() - began
    print(f"exit {elapsed:.2f}s after SIGTERM")
    assert elapsed < 30  # the default termination grace period
    assert read_ds(apps, namespace) is None
    stopped = [e for e in controller.events if e["event"] == "shutdown"] or [
        controller.wait_for("shutdown", 5)
    ]
    assert stopped[0]["deleted"] is True


def test_sigterm_while_waiting_for_readiness_is_prompt(start_controller, apps, namespace):
    controller = start_controller(IMAGES="bad=registry.invalid/never:1", READY_TIMEOUT="10m")
    controller.wait_for("daemonset_created", 60)
    began = time.monotonic()
    assert controller.stop(signal.SIGINT) == 0
    assert time.monotonic() - began < 10
    assert read_ds(apps, namespace) is None


def test_recovers_when_the_api_server_restarts(cluster, start_controller, apps, namespace):
    controller = start_controller()
    controller.wait_for("daemonset_ready", 90)
    old_uid = read_ds(apps, namespace).metadata.uid

    cluster.restart_apiserver()

    # The same process is still there and still watching: an outside delete is noticed.
    assert controller.process.poll() is None
    wait_until(lambda: read_ds(apps, namespace) is not None, 30, "the API server to answer")
    apps.delete_namespaced_daemon_set(NAME, namespace)
    wait_until(
        lambda: (ds := read_ds(apps, namespace)) is not None and ds.metadata.uid != old_uid,
        30,
        "the DaemonSet to be recreated after the restart",
    )
    controller.wait_for("daemonset_ready", 60)
    assert controller.stop() == 0


def test_a_foreign_daemonset_of_the_same_name_is_left_alone(start_controller, apps, namespace):
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": NAME, "labels": {"app": "someone-else"}},
        "spec": {
            "selector": {"matchLabels": {"app": "someone-else"}},
            "template": {
                "metadata": {"labels": {"app": "someone-else"}},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "c",
                            "image": "quay.io/x:1",
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }
    uid = apps.create_namespaced_daemon_set(namespace, foreign).metadata.uid
    controller = start_controller()
    error = controller.wait_for("daemonset_in_the_way", 30)
    assert f"uid {uid}" in error["error"]
    assert "someone-else" in error["error"]
    assert read_ds(apps, namespace).metadata.uid == uid
    assert controller.stop() == 0
    assert read_ds(apps, namespace).metadata.uid == uid  # not ours to delete on shutdown


def test_deleting_the_deployment_deletes_the_daemonset(
    start_controller, apps, namespace, owner_deployment
):
    deployment = owner_deployment
    controller = start_controller()
    controller.wait_for("daemonset_ready", 90)
    owners = read_ds(apps, namespace).metadata.owner_references
    assert [(o.kind, o.name, o.uid) for o in owners] == [
        ("Deployment", NAME, deployment.metadata.uid)
    ]
    # The controller dies without cleaning up (SIGKILL), then the Deployment is deleted:
    # the garbage collector removes the DaemonSet through the owner reference.
    controller.kill()
    assert read_ds(apps, namespace) is not None
    apps.delete_namespaced_deployment(NAME, namespace)
    wait_until(lambda: read_ds(apps, namespace) is None, 30, "the DaemonSet to be collected")


def test_a_node_that_joins_gets_a_pod_and_readiness_is_reported(start_controller, apps, add_node):
    controller = start_controller()
    controller.wait_for("daemonset_ready", 90)
    add_node("late-joiner")
    # The DaemonSet controller schedules a pod there without any refresh; the puller follows.
    controller.wait_for("daemonset_progress", 30, where=lambda e: e["desired"] == 4)
    late = controller.wait_for("daemonset_ready", 30, where=lambda e: e.get("late"))
    assert (late["ready"], late["desired"]) == (4, 4)


@pytest.fixture
def openshift_api(api_client):
    """Make the cluster look like OpenShift: serve the route.openshift.io API group."""
    extensions = client.ApiextensionsV1Api(api_client)
    apis = client.ApisApi(api_client)
    name = "routes.route.openshift.io"
    extensions.create_custom_resource_definition(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {
                "group": "route.openshift.io",
                "scope": "Namespaced",
                "names": {"plural": "routes", "singular": "route", "kind": "Route"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                ],
            },
        }
    )

    def served() -> bool:
        return any(g.name == "route.openshift.io" for g in apis.get_api_versions().groups)

    try:
        wait_until(served, 30, "the route.openshift.io group in discovery")
        yield
    finally:
        extensions.delete_custom_resource_definition(name)
        wait_until(lambda: not served(), 60, "route.openshift.io to leave discovery")


def test_on_openshift_the_pods_get_no_fixed_uid(
    openshift_api, start_controller, apps, core, namespace
):
    controller = start_controller()
    platform = controller.wait_for("platform", 30)
    assert platform["openshift"] is True
    controller.wait_for("daemonset_ready", 90)
    security = read_ds(apps, namespace).spec.template.spec.security_context
    assert security.run_as_user is None and security.run_as_group is None
    assert security.fs_group is None
    assert security.run_as_non_root is True
    # Admitted under `restricted` without a fixed UID (the SCC would assign one on OpenShift).
    assert len(core.list_namespaced_pod(namespace).items) == 3
    assert controller.stop() == 0


def _wait_until_quota_admission_refuses_pods(core, namespace):
    """A new ResourceQuota is not enforced at once: the quota controller must fill in its
    status and quota admission must see it. Until a pod is refused, pods are admitted."""
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "quota-probe"},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "c",
                    "image": "quay.io/probe:1",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }

    def refused():
        try:
            # A dry run goes through admission, quota included, and stores nothing.
            core.create_namespaced_pod(namespace, probe, dry_run="All")
        except client.ApiException as err:
            if err.status == 403 and "exceeded quota" in (err.body or ""):
                return True
            raise
        return False

    wait_until(refused, 30, "quota admission to refuse a pod")


def test_pods_refused_by_a_quota_are_reported_with_the_reason(start_controller, core, namespace):
    core.create_namespaced_resource_quota(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "no-pods"},
            "spec": {"hard": {"pods": "0"}},
        },
    )
    _wait_until_quota_admission_refuses_pods(core, namespace)
    controller = start_controller(READY_TIMEOUT="8s")
    summary = controller.wait_for("daemonset_not_ready", 60)
    assert (summary["desired"], summary["ready"]) == (3, 0)
    refused = controller.wait_for(
        "image_not_cached", 10, where=lambda e: e["reason"] == "FailedCreate"
    )
    assert "exceeded quota" in refused["message"]
    assert controller.stop() == 0


def test_two_controllers_do_not_fight(start_controller, apps, namespace):
    first = start_controller()
    first.wait_for("daemonset_ready", 90)
    second = start_controller()  # e.g. `make run` against the same namespace, or replicas: 2
    both = (first, second)

    def stood_aside():
        return [p for p in both if any('"another_controller"' in line for line in p.lines)]

    # Whoever wins the race for the name, the other one stands aside (no endless fight).
    (loser,) = wait_until(stood_aside, 60, "one controller to stand aside")
    winner = second if loser is first else first
    wait_until(
        lambda: (d := read_ds(apps, namespace)) is not None and d.status.number_ready == 3,
        60,
        "the winner's DaemonSet to be ready",
    )
    yielded_at = next(i for i, line in enumerate(loser.lines) if '"another_controller"' in line)
    assert winner.stop() == 0  # deletes its DaemonSet ...
    loser.wait_for("standby_over", 30)  # ... and the other one takes over
    over_at = next(i for i, line in enumerate(loser.lines) if '"standby_over"' in line)
    # While standing aside it created nothing.
    assert not any('"daemonset_created"' in line for line in loser.lines[yielded_at:over_at])
    loser.wait_for("daemonset_created", 30)
    loser.wait_for("daemonset_ready", 60)
    assert loser.stop() == 0
    assert read_ds(apps, namespace) is None


# Valid JSON of the right shape whose value only the API judges: a required node affinity
# needs at least one node selector term.
AFFINITY_THE_API_REFUSES = json.dumps(
    {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
)


def test_a_configuration_the_api_refuses_exits_1_and_leaves_the_running_daemonset(
    start_controller, apps, namespace
):
    good = start_controller()
    good.wait_for("daemonset_ready", 90)
    running = read_ds(apps, namespace).metadata.uid
    good.kill()  # as a crash would: the DaemonSet stays

    bad = start_controller(AFFINITY=AFFINITY_THE_API_REFUSES)
    rejected = bad.wait_for("config_rejected", 60)
    assert "nodeSelectorTerms" in rejected["error"]
    assert bad.process.wait(timeout=30) == 1  # exits, so the pod's restarts alert someone
    assert not any('"cycle_failed"' in line or "Traceback" in line for line in bad.lines)
    assert read_ds(apps, namespace).metadata.uid == running  # untouched


@pytest.mark.parametrize(
    "affinity, field",
    [
        (
            {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecutio": {}}},
            "requiredDuringSchedulingIgnoredDuringExecutio",
        ),
        (
            {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": "x"}
                }
            },
            "nodeSelectorTerms",
        ),
    ],
    ids=["misspelt-field", "string-for-a-list"],
)
def test_the_api_server_judges_bodies_the_client_models_would_refuse(
    cluster, namespace, affinity, field
):
    # What used to loop for ever: the client's models refused these before sending, with an
    # exception no handler expected. Sent as JSON, the API's strict validation answers.
    kube = Kube(load_api_client(str(cluster.kubeconfig)))
    body = build_daemonset(load_config({"IMAGES": "a=busybox", "NAMESPACE": namespace}))
    body["spec"]["template"]["spec"]["affinity"] = affinity
    with pytest.raises(Invalid) as caught:
        kube.create_daemonset(body, dry_run=True)
    assert field in str(caught.value)


def test_a_misspelt_affinity_exits_1_naming_the_field(start_controller, apps, namespace):
    bad = start_controller(
        AFFINITY=json.dumps({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecutio": {}}})
    )
    assert bad.process.wait(timeout=30) == 1
    log = "".join(bad.lines)
    assert "requiredDuringSchedulingIgnoredDuringExecutio" in log
    assert "Traceback" not in log
    assert read_ds(apps, namespace) is None


def test_our_daemonset_stays_ours_without_its_label(start_controller, apps, namespace):
    # No owner Deployment (as with `make run`): only the label said it was ours.
    controller = start_controller()
    controller.wait_for("daemonset_ready", 60)
    patched = apps.patch_namespaced_daemon_set(
        NAME,
        namespace,
        [{"op": "remove", "path": "/metadata/labels/app.kubernetes.io~1managed-by"}],
    )
    assert "app.kubernetes.io/managed-by" not in (patched.metadata.labels or {})
    make_refresh_due(apps, namespace)
    patched_at = time.monotonic()
    # The next refresh rolls it, as its own, instead of failing on it for ever.
    controller.wait_for("refresh_started", 60, where=lambda e: e["_received"] > patched_at)
    controller.wait_for("refresh_complete", 60)
    assert not any('"daemonset_in_the_way"' in line for line in controller.lines)
    assert controller.stop() == 0
    assert read_ds(apps, namespace) is None
