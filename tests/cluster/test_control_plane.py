"""Acceptance tests of the local control plane itself.

They pin down the behaviour the puller relies on: Pod Security admission, the daemonset
controller and scheduler with nodeSelector and taints, foreground deletion through the garbage
collector, RBAC with TokenRequest tokens, an API-server restart, and kwok's simulated failed pull.
The API-server restart test comes last in this file: it disturbs the shared cluster the most.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from localcluster.binaries import find_kubectl, pinned_versions
from tests.apiobjects import read_or_none
from tests.waiting import wait_until

OK_IMAGE = "registry.example/app:1"  # kwok "runs" any image except registry.invalid/...
BAD_IMAGE = "registry.invalid/x:1"


def restricted_container(name: str = "c", image: str = OK_IMAGE) -> client.V1Container:
    # What Pod Security "restricted" demands of every container.
    return client.V1Container(
        name=name,
        image=image,
        security_context=client.V1SecurityContext(
            allow_privilege_escalation=False,
            capabilities=client.V1Capabilities(drop=["ALL"]),
            run_as_non_root=True,
            run_as_user=65532,
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        ),
    )


def daemonset(
    name: str,
    container: client.V1Container | None = None,
    node_selector: dict[str, str] | None = None,
    tolerations: list[client.V1Toleration] | None = None,
) -> client.V1DaemonSet:
    labels = {"app": name}
    return client.V1DaemonSet(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DaemonSetSpec(
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[container or restricted_container()],
                    node_selector=node_selector,
                    tolerations=tolerations,
                    termination_grace_period_seconds=1,
                ),
            ),
        ),
    )


def ds_status(apps: client.AppsV1Api, ns: str, name: str) -> client.V1DaemonSetStatus:
    return apps.read_namespaced_daemon_set_status(name, ns).status


def wait_ds_ready(
    apps: client.AppsV1Api, ns: str, name: str, count: int, timeout: float = 60
) -> client.V1DaemonSetStatus:
    def ready() -> client.V1DaemonSetStatus | None:
        st = ds_status(apps, ns, name)
        ok = st.desired_number_scheduled == count and st.number_ready == count
        return st if ok else None

    return wait_until(ready, timeout, f"DaemonSet {ns}/{name} to have {count} ready pods")


def pods_of(core: client.CoreV1Api, ns: str, app: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(ns, label_selector=f"app={app}").items


# ---------------------------------------------------------------------------- tests


def test_kubectl_is_the_control_planes_own_version(cluster: object) -> None:
    """The kubectl the tests run is the one built with the control plane, not the machine's."""
    assert shutil.which("kubectl") == str(find_kubectl(build=False))
    result = subprocess.run(
        ["kubectl", "version", "-o", "json"],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    versions = json.loads(result.stdout)
    expected = pinned_versions()["KUBERNETES_VERSION"]
    assert versions["clientVersion"]["gitVersion"] == expected
    assert versions["serverVersion"]["gitVersion"] == expected


def test_cluster_has_three_plain_ready_nodes(cluster, api_client):
    nodes = client.CoreV1Api(api_client).list_node().items
    assert sorted(n.metadata.name for n in nodes) == ["node-0", "node-1", "node-2"]
    for node in nodes:
        assert not node.spec.taints, f"{node.metadata.name} has taints {node.spec.taints}"
        assert node.status.allocatable["pods"] == "110"
    # kwok must renew a Lease per node: without them the node-lifecycle controller marks the
    # nodes NotReady after its grace period (~50s) and every pod on them becomes unready.
    leases = client.CoordinationV1Api(api_client).list_namespaced_lease("kube-node-lease").items
    assert {lease.metadata.name for lease in leases} >= {"node-0", "node-1", "node-2"}


def test_restricted_daemonset_becomes_ready_on_every_node(api_client, namespace):
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_daemon_set(namespace, daemonset("ok"))
    st = wait_ds_ready(apps, namespace, "ok", 3)
    assert st.number_ready == st.desired_number_scheduled == 3
    nodes = {p.spec.node_name for p in pods_of(client.CoreV1Api(api_client), namespace, "ok")}
    assert nodes == {"node-0", "node-1", "node-2"}


def test_pod_security_rejects_violating_daemonset_pods(api_client, namespace):
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    # No securityContext at all: violates "restricted" (allowPrivilegeEscalation, capabilities,
    # runAsNonRoot, seccompProfile). The DaemonSet itself is admitted (only warned about); its pods
    # are refused, which the daemonset controller reports as FailedCreate events.
    apps.create_namespaced_daemon_set(
        namespace, daemonset("bad", container=client.V1Container(name="c", image=OK_IMAGE))
    )

    def failed_create_event() -> client.CoreV1Event | None:
        events = core.list_namespaced_event(
            namespace, field_selector="involvedObject.kind=DaemonSet,involvedObject.name=bad"
        ).items
        return next((e for e in events if e.reason == "FailedCreate"), None)

    event = wait_until(failed_create_event, 60, "a FailedCreate event of DaemonSet bad")
    assert "violates PodSecurity" in event.message and "restricted" in event.message
    st = ds_status(apps, namespace, "bad")
    assert st.desired_number_scheduled == 3
    assert not st.current_number_scheduled and not st.number_ready
    assert pods_of(core, namespace, "bad") == []


def test_node_selector_matches_two_of_five_nodes(api_client, namespace, add_node):
    apps = client.AppsV1Api(api_client)
    add_node("pool-a-0", labels={"pool": "a"})
    add_node("pool-a-1", labels={"pool": "a"})
    assert len(client.CoreV1Api(api_client).list_node().items) == 5
    apps.create_namespaced_daemon_set(namespace, daemonset("sel", node_selector={"pool": "a"}))
    st = wait_ds_ready(apps, namespace, "sel", 2)
    assert st.desired_number_scheduled == 2
    nodes = {p.spec.node_name for p in pods_of(client.CoreV1Api(api_client), namespace, "sel")}
    assert nodes == {"pool-a-0", "pool-a-1"}


def test_tainted_node_gets_pod_only_when_tolerated(api_client, namespace, add_node):
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    add_node("tainted-0", taints=[{"key": "dedicated", "value": "x", "effect": "NoSchedule"}])
    apps.create_namespaced_daemon_set(namespace, daemonset("plain"))
    apps.create_namespaced_daemon_set(
        namespace,
        daemonset(
            "tolerant",
            tolerations=[
                client.V1Toleration(
                    key="dedicated", operator="Equal", value="x", effect="NoSchedule"
                )
            ],
        ),
    )
    wait_ds_ready(apps, namespace, "plain", 3)
    wait_ds_ready(apps, namespace, "tolerant", 4)
    assert "tainted-0" not in {p.spec.node_name for p in pods_of(core, namespace, "plain")}
    assert "tainted-0" in {p.spec.node_name for p in pods_of(core, namespace, "tolerant")}


def test_foreground_deletion_removes_pods_before_daemonset(api_client, namespace):
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    apps.create_namespaced_daemon_set(namespace, daemonset("fg"))
    wait_ds_ready(apps, namespace, "fg", 3)

    apps.delete_namespaced_daemon_set(
        "fg", namespace, body=client.V1DeleteOptions(propagation_policy="Foreground")
    )
    # The garbage collector holds the DaemonSet (finalizer) until its pods are gone; kwok's
    # pod-delete stage is what finishes the pods' deletion.
    try:
        ds = apps.read_namespaced_daemon_set("fg", namespace)
        assert ds.metadata.deletion_timestamp is not None
        assert "foregroundDeletion" in (ds.metadata.finalizers or [])
    except ApiException as exc:  # already completely gone: fine, checked below
        assert exc.status == 404

    wait_until(
        lambda: read_or_none(apps.read_namespaced_daemon_set, "fg", namespace) is None,
        60,
        "DaemonSet fg to be deleted",
    )
    assert pods_of(core, namespace, "fg") == []


def test_service_account_can_do_exactly_what_its_role_grants(cluster, api_client, namespace):
    core, rbac = client.CoreV1Api(api_client), client.RbacAuthorizationV1Api(api_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="cm-reader"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[""], resources=["configmaps"], verbs=["get", "list"]
                )
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="reader-cm-reader"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="cm-reader"
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)
            ],
        ),
    )
    token = core.create_namespaced_service_account_token(
        "reader",
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
        ),
    ).status.token

    conf = client.Configuration()
    conf.host = cluster.server
    conf.ssl_ca_cert = str(cluster.ca_file)
    conf.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(conf) as sa_client:
        sa_core = client.CoreV1Api(sa_client)

        def allowed() -> bool:
            # The RBAC authorizer sees the new binding through an informer: allow a moment.
            try:
                sa_core.list_namespaced_config_map(namespace)
                return True
            except ApiException as exc:
                if exc.status == 403:
                    return False
                raise

        wait_until(allowed, 30, "the RoleBinding to take effect")
        sa_core.read_namespaced_config_map("kube-root-ca.crt", namespace)

        denied = [
            lambda: sa_core.create_namespaced_config_map(
                namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="nope"))
            ),
            lambda: sa_core.delete_namespaced_config_map("kube-root-ca.crt", namespace),
            lambda: sa_core.list_namespaced_pod(namespace),
            lambda: sa_core.list_namespaced_config_map("default"),
            lambda: sa_core.list_node(),
        ]
        for call in denied:
            with pytest.raises(ApiException) as err:
                call()
            assert err.value.status == 403


def test_unpullable_image_reports_err_image_pull(api_client, namespace):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="bad-image"),
            spec=client.V1PodSpec(containers=[restricted_container(image=BAD_IMAGE)]),
        ),
    )

    def waiting() -> client.V1Pod | None:
        pod = core.read_namespaced_pod("bad-image", namespace)
        statuses = pod.status.container_statuses or []
        return pod if statuses and statuses[0].state.waiting else None

    pod = wait_until(waiting, 60, "pod bad-image to report a waiting container")
    state = pod.status.container_statuses[0].state.waiting
    assert state.reason in ("ErrImagePull", "ImagePullBackOff")
    assert BAD_IMAGE in state.message
    assert not pod.status.container_statuses[0].ready
    ready = next(c for c in pod.status.conditions if c.type == "Ready")
    assert ready.status == "False"
    assert pod.status.phase == "Pending"


def test_client_recovers_after_apiserver_restart(cluster, api_client, namespace):
    # Last on purpose: it disturbs every component of the shared cluster.
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="before"), data={"k": "v"})
    )
    old_pid = cluster.processes["kube-apiserver"]["pid"]

    cluster.stop_apiserver()
    assert cluster.processes["kube-apiserver"]["pid"] is None
    with pytest.raises(Exception):  # noqa: B017 - connection refused, whatever urllib3 wraps it in
        core.read_namespaced_config_map("before", namespace, _request_timeout=2)
    cluster.start_apiserver()
    assert cluster.processes["kube-apiserver"]["pid"] not in (None, old_pid)

    def retrying_read() -> client.V1ConfigMap | None:
        # What a retrying client does: treat connection errors and 5xx as "not yet".
        try:
            return core.read_namespaced_config_map("before", namespace, _request_timeout=5)
        except ApiException as exc:
            if exc.status >= 500:
                return None
            raise
        except Exception:  # noqa: BLE001 - connection errors from urllib3
            return None

    assert wait_until(retrying_read, 60, "the API server to answer again").data == {"k": "v"}
    # Data survived (same etcd) and the controllers reconnected: a DaemonSet still goes Ready.
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="after"))
    )
    apps.create_namespaced_daemon_set(namespace, daemonset("after-restart"))
    wait_ds_ready(apps, namespace, "after-restart", 3, timeout=120)
    assert len(cluster.wait_nodes_ready(3, timeout=60)) == 3
