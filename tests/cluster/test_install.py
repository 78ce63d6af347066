"""The install paths of docs/install.md, end to end on the real local control plane.

- OpenShift: the three templates processed as `oc process -p ...` does (tests/templates.py,
  `oc` is not available here) and applied with `kubectl apply` as `oc apply -f -` would.
- Kubernetes: `kubectl apply -k manifests/kubernetes`, as documented.

The controller then runs out of the cluster, authenticated as the installed ServiceAccount (a
token from the TokenRequest API), with exactly the environment its pod would get (the
ConfigMap through envFrom, overlaid by the container's own `env`). Its DaemonSet becoming
ready, and a ConfigMap edit applied live, prove the Role grants enough (the ConfigMap is
watched by name, as its `resourceNames` rule allows); `kubectl auth can-i` proves it grants no
more (pods: list only; events: list, and create/patch in events.k8s.io; that one ConfigMap
only); removing one rule proves a missing permission is named. SIGTERM keeps the DaemonSet the
Deployment owns, and deleting the Deployment removes it.
Finally every object in manifests/ is accepted by a server-side dry run and the Deployment's
pods pass `restricted` Pod Security admission.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from localcluster.binaries import find_kubectl
from tests.apiobjects import read_or_none
from tests.controller_process import ControllerProcess
from tests.ports import free_port
from tests.templates import process_template
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
OPENSHIFT = ROOT / "manifests" / "openshift"
KUSTOMIZE_DIR = ROOT / "manifests" / "kubernetes"
KUSTOMIZE_NAMESPACE = "k8s-image-puller"
NAME = "kubernetes-image-puller"  # default name of every object (and of the DaemonSet)
IMAGES = "java=quay.io/eclipse/che-java17-maven:next;node=docker.io/library/node:20-alpine;"
NODES = ["node-0", "node-1", "node-2"]
# In the order of the documentation: serviceaccount, configmap, app.
TEMPLATES = ("serviceaccount.yaml", "configmap.yaml", "app.yaml")


# --- helpers ---------------------------------------------------------------------------------


def kubectl_env(kubeconfig: Path) -> dict[str, str]:
    """A clean environment whose kubectl is the one built at the API server's version."""
    built = find_kubectl(build=False).parent
    return {"KUBECONFIG": str(kubeconfig), "PATH": f"{built}:/usr/bin:/bin", "HOME": "/tmp"}


def kubectl(
    cluster, *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run kubectl as the admin; fail with its output when it fails."""
    result = subprocess.run(
        ["kubectl", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=kubectl_env(cluster.kubeconfig),
        check=False,
    )
    assert result.returncode == 0, (
        f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
    )
    return result


def as_list(objects: list[dict]) -> str:
    """What `oc process` writes: one v1 List of the processed objects."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})


def process(name: str, params: dict[str, str] | None = None) -> list[dict]:
    return process_template(OPENSHIFT / name, params or {})


def oc_install(cluster, namespace: str, params: dict[str, dict[str, str]]) -> None:
    """`oc process -f T -p ... | oc apply -f -` for each template, in the project `namespace`."""
    for name in TEMPLATES:
        objects = process(name, params.get(name))
        out = kubectl(cluster, "apply", "-n", namespace, "-f", "-", stdin=as_list(objects))
        assert out.stdout.count("\n") == len(objects), out.stdout


def serviceaccount_kubeconfig(cluster, api_client, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig that authenticates as ServiceAccount `sa` with a TokenRequest token."""
    core = client.CoreV1Api(api_client)
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = core.create_namespaced_service_account_token(sa, namespace, request).status.token
    assert token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority": str(cluster.ca_file),
                },
            }
        ],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [
            {"name": sa, "context": {"cluster": "local", "user": sa, "namespace": namespace}}
        ],
        "current-context": sa,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    # It really is that identity (not the admin's).
    whoami = subprocess.run(
        ["kubectl", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
        capture_output=True,
        text=True,
        timeout=30,
        env=kubectl_env(path),
        check=True,
    )
    assert whoami.stdout == f"system:serviceaccount:{namespace}:{sa}", whoami
    return path


def pod_environment(api_client, namespace: str, deployment: str, pod_name: str) -> dict[str, str]:
    """The environment the Deployment's container would get, read from the API.

    envFrom first (the ConfigMap's data), then the container's `env`, which wins, as the
    kubelet does; fieldRefs resolved for a pod called `pod_name` in `namespace`.
    """
    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    (container,) = apps.read_namespaced_deployment(
        deployment, namespace
    ).spec.template.spec.containers
    env: dict[str, str] = {}
    for source in container.env_from or []:
        assert source.config_map_ref is not None, source
        data = core.read_namespaced_config_map(source.config_map_ref.name, namespace).data or {}
        env.update(data)
    fields = {"metadata.namespace": namespace, "metadata.name": pod_name}
    for var in container.env or []:
        if var.value_from is not None:
            env[var.name] = fields[var.value_from.field_ref.field_path]
        else:
            env[var.name] = var.value or ""
    return env


def on_this_machine(env: dict[str, str]) -> dict[str, str]:
    """The pod's environment for a process on this machine: its endpoints (METRICS_PORT 8080
    in the Deployment) on 127.0.0.1 and a free port, so runs never collide."""
    return {**env, "METRICS_HOST": "127.0.0.1", "METRICS_PORT": str(free_port())}


def assert_ready_everywhere(controller: ControllerProcess, api_client, namespace: str) -> dict:
    ready = controller.wait_for("daemonset_ready", 90)
    assert (ready["ready"], ready["desired"]) == (3, 3), ready
    apps = client.AppsV1Api(api_client)
    ds = apps.read_namespaced_daemon_set(NAME, namespace)
    assert ds.status.desired_number_scheduled == 3
    assert ds.status.number_ready == 3
    pods = client.CoreV1Api(api_client).list_namespaced_pod(
        namespace, label_selector=f"app.kubernetes.io/instance={NAME},app.kubernetes.io/managed-by"
    )
    assert sorted(p.spec.node_name for p in pods.items) == NODES
    return ds


def assert_owned_by_the_deployment(ds, api_client, namespace: str) -> None:
    deployment = client.AppsV1Api(api_client).read_namespaced_deployment(NAME, namespace)
    (owner,) = ds.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == ("Deployment", NAME, deployment.metadata.uid)
    assert owner.controller is True


def assert_deployment_runs(api_client, namespace: str) -> None:
    """The puller's own pod was admitted under `restricted` enforcement (kwok "runs" it)."""
    apps = client.AppsV1Api(api_client)
    wait_until(
        lambda: (
            (apps.read_namespaced_deployment(NAME, namespace).status.available_replicas or 0) == 1
        ),
        60,
        f"Deployment {namespace}/{NAME} to have its pod available",
    )


# What the installed ServiceAccount may and may not do in its namespace (`kubectl auth can-i`):
# the Role's rules, exactly; pods are only ever listed, events listed (and recorded through
# events.k8s.io: create, patch for a series), and of the
# ConfigMaps only its own (TYPE/NAME: a request naming it) can be read and watched.
OWN_CONFIGMAP = f"configmaps/{NAME}"
ALLOWED = [
    ("get", "daemonsets.apps"), ("list", "daemonsets.apps"), ("watch", "daemonsets.apps"),
    ("create", "daemonsets.apps"), ("update", "daemonsets.apps"), ("patch", "daemonsets.apps"),
    ("delete", "daemonsets.apps"), ("get", "deployments.apps"),
    ("list", "pods"), ("list", "events"),
    ("create", "events.events.k8s.io"), ("patch", "events.events.k8s.io"),
    ("get", OWN_CONFIGMAP), ("list", OWN_CONFIGMAP), ("watch", OWN_CONFIGMAP),
]  # fmt: skip
DENIED = [
    ("get", "pods"), ("watch", "pods"), ("get", "events"), ("watch", "events"),
    ("update", "events"), ("delete", "events"), ("deletecollection", "daemonsets.apps"),
    ("create", "events"), ("patch", "events"), ("delete", "events.events.k8s.io"),
    ("get", "events.events.k8s.io"), ("update", "events.events.k8s.io"),
    ("list", "deployments.apps"), ("patch", "deployments.apps"),
    ("get", "secrets"), ("list", "secrets"), ("watch", "secrets"),
    ("get", "configmaps"), ("list", "configmaps"), ("watch", "configmaps"),
    ("create", "configmaps"), ("get", "configmaps/other"), ("watch", "configmaps/other"),
    ("update", OWN_CONFIGMAP), ("patch", OWN_CONFIGMAP), ("delete", OWN_CONFIGMAP),
]  # fmt: skip


def assert_least_privilege(kubeconfig: Path, namespace: str) -> None:
    env = kubectl_env(kubeconfig)
    for expected, checks in (("yes", ALLOWED), ("no", DENIED)):
        for verb, resource in checks:
            out = subprocess.run(
                ["kubectl", "auth", "can-i", verb, resource, "-n", namespace],
                capture_output=True,
                text=True,
                timeout=30,
                env=env,
                check=False,
            )
            assert out.stdout.strip() == expected, (verb, resource, out.stdout, out.stderr)


def assert_deployment_selects_only_its_own_pod(api_client, namespace: str) -> None:
    """The Deployment's selector skips the DaemonSet's pods, though both share the default name."""
    apps = client.AppsV1Api(api_client)
    selector = apps.read_namespaced_deployment(NAME, namespace).spec.selector.match_labels
    assert selector["app.kubernetes.io/component"] == "controller", selector
    pods = client.CoreV1Api(api_client).list_namespaced_pod(
        namespace, label_selector=",".join(f"{k}={v}" for k, v in selector.items())
    )
    assert pods.items, "the Deployment's own pod"
    assert all(p.metadata.name.startswith(f"{NAME}-") for p in pods.items)
    assert not [
        p.metadata.name
        for p in pods.items
        if "app.kubernetes.io/managed-by" in (p.metadata.labels or {})
    ], "the Deployment's selector matches the DaemonSet's pods"


def stop_and_check_kept(controller: ControllerProcess, api_client, namespace: str) -> None:
    """SIGTERM: exit 0 in time, and the DaemonSet the Deployment owns stays for the next start
    (deleting the Deployment, an uninstall, removes it through the owner reference)."""
    apps = client.AppsV1Api(api_client)
    uid = apps.read_namespaced_daemon_set(NAME, namespace).metadata.uid
    began = time.monotonic()
    assert controller.stop() == 0
    assert time.monotonic() - began < 30  # the Deployment's terminationGracePeriodSeconds
    kept = read_or_none(apps.read_namespaced_daemon_set, NAME, namespace)
    assert kept is not None and kept.metadata.uid == uid, "log:\n" + "".join(controller.lines[-10:])
    assert any(e["event"] == "shutdown" and e["deleted"] is False for e in controller.events) or (
        controller.wait_for("shutdown", 5)["deleted"] is False
    )


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def oc_installed(cluster, api_client, namespace):
    """The OpenShift install of docs/install.md, in the test's namespace (the "project")."""
    oc_install(
        cluster,
        namespace,
        {"configmap.yaml": {"IMAGES": IMAGES, "NAMESPACE": namespace}},
    )
    return namespace


@pytest.fixture
def sa_kubeconfig(cluster, api_client, tmp_path):
    def make(namespace: str, sa: str = NAME) -> Path:
        return serviceaccount_kubeconfig(
            cluster, api_client, namespace, sa, tmp_path / f"{namespace}-{sa}.kubeconfig"
        )

    return make


@pytest.fixture
def kustomize_namespace(cluster, api_client):
    """Namespace k8s-image-puller, as `kubectl apply -k` creates it; deleted and waited for."""
    core = client.CoreV1Api(api_client)
    wait_until(
        lambda: read_or_none(core.read_namespace, KUSTOMIZE_NAMESPACE) is None,
        90,
        f"namespace {KUSTOMIZE_NAMESPACE} left from before to be gone",
    )
    try:
        yield KUSTOMIZE_NAMESPACE
    finally:
        if read_or_none(core.read_namespace, KUSTOMIZE_NAMESPACE) is not None:
            core.delete_namespace(KUSTOMIZE_NAMESPACE)
        wait_until(
            lambda: read_or_none(core.read_namespace, KUSTOMIZE_NAMESPACE) is None,
            90,
            f"namespace {KUSTOMIZE_NAMESPACE} to be deleted",
        )


# --- tests -----------------------------------------------------------------------------------


def test_openshift_templates_install_and_the_role_is_sufficient(
    cluster, api_client, oc_installed, sa_kubeconfig, controllers
):
    namespace = oc_installed
    kubeconfig = sa_kubeconfig(namespace)
    assert_least_privilege(kubeconfig, namespace)
    env = pod_environment(api_client, namespace, NAME, f"{NAME}-abc12-xyz34")
    # The ConfigMap the template made, with the -p overrides, is what the controller reads.
    assert env["IMAGES"] == IMAGES
    assert env["NAMESPACE"] == namespace
    assert env["DEPLOYMENT_NAME"] == NAME
    assert env["METRICS_PORT"] == "8080"  # the Deployment's named port
    env = on_this_machine(env)
    controller = controllers({**env, "KUBECONFIG": str(kubeconfig)})

    ds = assert_ready_everywhere(controller, api_client, namespace)
    # The endpoints need no permission: ready, and the figures are what the API says.
    base = f"http://127.0.0.1:{env['METRICS_PORT']}"
    with urllib.request.urlopen(f"{base}/readyz", timeout=10) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    series = f'{{daemonset="{NAME}",namespace="{namespace}"}}'
    assert f"imagepuller_nodes_holding{series} 3.0" in metrics
    assert_owned_by_the_deployment(ds, api_client, namespace)
    assert_deployment_runs(api_client, namespace)
    assert_deployment_selects_only_its_own_pod(api_client, namespace)
    assert [c.name for c in ds.spec.template.spec.containers] == ["java", "node"]
    # Nothing went wrong on the way (no 403 from a missing rule, no other API error).
    bad = [
        e for e in controller.events if e["event"] in ("api_forbidden", "api_error", "watch_failed")
    ]
    assert not bad, bad
    # Events were recorded as the ServiceAccount (create, and patch for a repeat).
    assert not [e for e in controller.events if e["event"] == "event_not_recorded"]
    stop_and_check_kept(controller, api_client, namespace)
    # Uninstalling (deleting the Deployment) removes the DaemonSet it owns.
    client.AppsV1Api(api_client).delete_namespaced_deployment(NAME, namespace)
    wait_until(
        lambda: (
            read_or_none(client.AppsV1Api(api_client).read_namespaced_daemon_set, NAME, namespace)
            is None
        ),
        60,
        "the DaemonSet to be collected with the Deployment",
    )


def test_a_rule_removed_from_the_role_is_reported_by_name(
    cluster, api_client, oc_installed, sa_kubeconfig, controllers
):
    namespace = oc_installed
    rbac = client.RbacAuthorizationV1Api(api_client)
    role = rbac.read_namespaced_role(NAME, namespace)
    full_rules = api_client.sanitize_for_serialization(role.rules)
    without_create = copy.deepcopy(full_rules)
    (ds_rule,) = [r for r in without_create if r["resources"] == ["daemonsets"]]
    ds_rule["verbs"].remove("create")
    rbac.patch_namespaced_role(
        NAME, namespace, [{"op": "replace", "path": "/rules", "value": without_create}]
    )

    env = pod_environment(api_client, namespace, NAME, f"{NAME}-abc12-xyz34")
    controller = controllers({**on_this_machine(env), "KUBECONFIG": str(sa_kubeconfig(namespace))})
    forbidden = controller.wait_for("api_forbidden", 60)
    assert forbidden["missing_permission"] == f"create daemonsets.apps in namespace {namespace}"
    assert "Role" in forbidden["error"]
    # It keeps running, and retries: with the rule back, it carries on without a restart.
    controller.wait_for("cycle_retry", 10)
    assert controller.process.poll() is None
    rbac.patch_namespaced_role(
        NAME, namespace, [{"op": "replace", "path": "/rules", "value": full_rules}]
    )
    assert_ready_everywhere(controller, api_client, namespace)
    stop_and_check_kept(controller, api_client, namespace)


def test_kubectl_apply_k_install_and_the_role_is_sufficient(
    cluster, api_client, kustomize_namespace, sa_kubeconfig, controllers
):
    namespace = kustomize_namespace
    out = kubectl(cluster, "apply", "-k", str(KUSTOMIZE_DIR))
    assert f"namespace/{namespace} created" in out.stdout, out.stdout
    core = client.CoreV1Api(api_client)
    labels = core.read_namespace(namespace).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # The ServiceAccount controller fills a new namespace in the background.
    wait_until(
        lambda: read_or_none(core.read_namespaced_service_account, NAME, namespace),
        30,
        f"ServiceAccount {NAME} in {namespace}",
    )

    env = pod_environment(api_client, namespace, NAME, f"{NAME}-abc12-xyz34")
    assert env["NAMESPACE"] == namespace
    assert env["IMAGES"] == ""  # the shipped default: the controller exits 1 until it is set
    # As an administrator would: set IMAGES in the ConfigMap, then (re)start the puller.
    core.patch_namespaced_config_map(NAME, namespace, {"data": {"IMAGES": IMAGES}})
    env = pod_environment(api_client, namespace, NAME, f"{NAME}-abc12-xyz34")
    assert env["IMAGES"] == IMAGES
    kubeconfig = sa_kubeconfig(namespace)
    assert_least_privilege(kubeconfig, namespace)
    controller = controllers({**on_this_machine(env), "KUBECONFIG": str(kubeconfig)})

    ds = assert_ready_everywhere(controller, api_client, namespace)
    assert_owned_by_the_deployment(ds, api_client, namespace)
    assert_deployment_runs(api_client, namespace)
    assert_deployment_selects_only_its_own_pod(api_client, namespace)
    # The ConfigMap is watched as the ServiceAccount (its Role names that one ConfigMap): an
    # edit applies live, with no restart.
    core.patch_namespaced_config_map(
        NAME, namespace, {"data": {"IMAGES": IMAGES + "extra=quay.io/x/extra:1;"}}
    )
    applied = controller.wait_for("config_applied", 30)
    assert applied["changed"] == ["images"]
    wait_until(
        lambda: (
            [
                c.name
                for c in client.AppsV1Api(api_client)
                .read_namespaced_daemon_set(NAME, namespace)
                .spec.template.spec.containers
            ]
            == ["java", "node", "extra"]
        ),
        30,
        "the DaemonSet's template to have the new image",
    )
    controller.wait_for("daemonset_ready", 90)
    bad = [
        e for e in controller.events if e["event"] in ("api_forbidden", "api_error", "watch_failed")
    ]
    assert not bad, bad
    # Events were recorded as the ServiceAccount (create, and patch for a repeat).
    assert not [e for e in controller.events if e["event"] == "event_not_recorded"]
    stop_and_check_kept(controller, api_client, namespace)


def _kustomize_objects(cluster) -> list[dict]:
    out = kubectl(cluster, "kustomize", str(KUSTOMIZE_DIR))
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _in_namespace(objects: list[dict], namespace: str) -> list[dict]:
    """The namespaced objects moved to `namespace` (RoleBinding subjects too)."""
    moved = []
    for obj in copy.deepcopy(objects):
        if obj["kind"] == "Namespace":
            continue
        obj["metadata"]["namespace"] = namespace
        for subject in obj.get("subjects") or []:
            if "namespace" in subject:
                subject["namespace"] = namespace
        moved.append(obj)
    return moved


def _pod_from(deployment: dict, name: str) -> dict:
    template = copy.deepcopy(deployment["spec"]["template"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": template["metadata"].get("labels", {})},
        "spec": template["spec"],
    }


def test_every_manifest_passes_server_dry_run_and_restricted_pod_security(
    cluster, api_client, namespace
):
    templates = [
        obj
        for name in TEMPLATES
        for obj in process(name, {"IMAGES": IMAGES} if name == "configmap.yaml" else None)
    ]
    kustomized = _kustomize_objects(cluster)
    assert sorted(o["kind"] for o in kustomized) == sorted(
        ["Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment"]
    )
    assert all(
        o["metadata"].get("namespace") == KUSTOMIZE_NAMESPACE
        for o in kustomized
        if o["kind"] != "Namespace"
    )

    # Server-side dry run: the API server validates and admits (Pod Security warns on the
    # Deployments: `warn: restricted` is set on the namespace), nothing is stored.
    for objects in (templates, _in_namespace(kustomized, namespace)):
        out = kubectl(
            cluster, "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=as_list(objects)
        )
        assert out.stdout.count("(server dry run)") == len(objects), out.stdout
        assert "Warning" not in out.stderr, out.stderr
    (ns_obj,) = [o for o in kustomized if o["kind"] == "Namespace"]
    out = kubectl(cluster, "apply", "--dry-run=server", "-f", "-", stdin=json.dumps(ns_obj))
    assert f"namespace/{KUSTOMIZE_NAMESPACE}" in out.stdout and "(server dry run)" in out.stdout
    core = client.CoreV1Api(api_client)
    assert read_or_none(core.read_namespace, KUSTOMIZE_NAMESPACE) is None  # really not stored

    # The Deployments' pods under `restricted` enforcement: Pod admission runs on a dry run.
    # Admission also wants the ServiceAccount they name to exist, so that one is created.
    core.create_namespaced_service_account(namespace, {"metadata": {"name": NAME}})
    deployments = {
        "openshift": next(o for o in templates if o["kind"] == "Deployment"),
        "kubernetes": next(o for o in kustomized if o["kind"] == "Deployment"),
    }
    for origin, deployment in deployments.items():
        pod = _pod_from(deployment, f"{origin}-puller")
        created = core.create_namespaced_pod(namespace, pod, dry_run="All")
        assert created.metadata.name == f"{origin}-puller"
        assert read_or_none(core.read_namespaced_pod, pod["metadata"]["name"], namespace) is None

        # Control: the same pod allowed to escalate privileges is refused by Pod Security.
        escalating = copy.deepcopy(pod)
        escalating["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
        with pytest.raises(ApiException) as refused:
            core.create_namespaced_pod(namespace, escalating, dry_run="All")
        assert refused.value.status == 403
        assert "violates PodSecurity" in refused.value.body
        assert "allowPrivilegeEscalation" in refused.value.body
