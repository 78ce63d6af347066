"""The chart on the real local control plane, with the real helm: install, an upgrade that
changes the image list (applied live, no node ever without its images), an upgrade with a value
the schema refuses (refused, nothing changed) and uninstall (nothing left), for the single
puller and for the operator with a KubernetesImagePuller from the values.

As in tests/cluster/test_install.py, the controller (or the operator) runs out of the cluster,
authenticated as the ServiceAccount the chart made, with the environment its pod would get; the
kwok nodes "run" the chart's own Deployment. Each test prints its duration.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from imagepuller.resource import GROUP, PLURAL, VERSION
from tests.apiobjects import read_or_none
from tests.chart.helmchart import CHART, IMAGES, helm
from tests.cluster.conftest import CRD, kubectl
from tests.cluster.test_install import (
    assert_ready_everywhere,
    on_this_machine,
    pod_environment,
    serviceaccount_kubeconfig,
)
from tests.cluster.test_operator import ready_status
from tests.controller_process import operator_process
from tests.holding import HoldingWatcher
from tests.waiting import wait_until

NAME = "kubernetes-image-puller"
SELECTOR = f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=image-cache"
MORE = "python=docker.io/library/python:3.12-slim;"
CRD_NAME = f"{PLURAL}.{GROUP}"
POLICY = "imagepuller-operator-kubernetesimagepullers"
NODES = {"node-0", "node-1", "node-2"}


class Release:
    """One helm release on the local cluster."""

    def __init__(self, tools, cluster, name: str, namespace: str, home: Path):
        self.tools, self.cluster, self.name, self.namespace = tools, cluster, name, namespace
        self.home = home

    def run(self, *args: str):
        return helm(
            self.tools, *args, "-n", self.namespace, kubeconfig=self.cluster.kubeconfig,
            home=self.home,
        )  # fmt: skip

    def install(self, *values: str):
        return self.run("install", self.name, str(CHART), *_sets(values))

    def upgrade(self, *values: str):
        return self.run("upgrade", self.name, str(CHART), "--reuse-values", *_sets(values))

    def revision(self) -> int:
        listed = self.run("history", self.name, "-o", "json")
        assert listed.returncode == 0, listed.stderr
        deployed = [r for r in json.loads(listed.stdout) if r["status"] == "deployed"]
        assert len(deployed) == 1, deployed
        return int(deployed[0]["revision"])

    def uninstall(self):
        return self.run("uninstall", self.name, "--wait", "--timeout", "120s")


def _sets(values: tuple[str, ...]) -> list[str]:
    """Each KEY=VALUE as a string (image lists, numbers as the ConfigMap holds them), except
    the booleans."""
    flags = {value: "--set" if value.endswith(("=true", "=false")) else "--set-string"
             for value in values}  # fmt: skip
    return [arg for value in values for arg in (flags[value], value)]


def assert_ok(result) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


def helm_secrets(core, namespace: str, release: str) -> list[str]:
    """The Secrets where helm keeps the release's history."""
    selector = f"owner=helm,name={release}"
    return [
        s.metadata.name
        for s in core.list_namespaced_secret(namespace, label_selector=selector).items
    ]


def garbage_collector_watches_the_resources(cluster) -> bool:
    """Whether a cluster-wide watch of KubernetesImagePullers is open: the garbage collector's,
    which it opens on its discovery pass (every 30 s) after the CRD appears (the operator here
    watches one namespace). Until then it cannot collect a deleted resource's DaemonSet once
    the CRD is gone as well, and the DaemonSet would stay."""
    text = kubectl(cluster, "get", "--raw", "/metrics")
    wanted = ('resource="kubernetesimagepullers"', 'scope="cluster"', 'verb="WATCH"')
    for line in text.splitlines():
        if line.startswith("apiserver_longrunning_requests{") and all(w in line for w in wanted):
            return float(line.rsplit(" ", 1)[1]) >= 1
    return False


def gone(read, *args) -> bool:
    return read_or_none(read, *args) is None


# --- the single puller -----------------------------------------------------------------------


def test_the_puller_installs_upgrades_live_refuses_a_bad_value_and_uninstalls_clean(
    cluster, api_client, namespace, helm_tools, controllers, tmp_path
):
    started = time.monotonic()
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    rbac = client.RbacAuthorizationV1Api(api_client)
    release = Release(helm_tools, cluster, "imagepuller", namespace, tmp_path / "helm")

    # Install: the puller becomes ready on every node, as the ServiceAccount the chart made.
    installed = release.install(f"puller.config.IMAGES={IMAGES}")
    assert_ok(installed)
    assert f"imagepuller status -n {namespace}" in installed.stdout  # NOTES.txt
    env = pod_environment(api_client, namespace, NAME, f"{NAME}-5d8f7-x2x9q")
    assert (env["IMAGES"], env["NAMESPACE"], env["CONFIGMAP_NAME"]) == (IMAGES, namespace, NAME)
    kubeconfig = serviceaccount_kubeconfig(cluster, api_client, namespace, NAME, tmp_path / "sa")
    controller = controllers({**on_this_machine(env), "KUBECONFIG": str(kubeconfig)})
    ds = assert_ready_everywhere(controller, api_client, namespace)
    assert [c.name for c in ds.spec.template.spec.containers] == ["java", "node"]
    deployment = apps.read_namespaced_deployment(NAME, namespace)

    # Upgrade with one more image: the ConfigMap edit is applied live by the running
    # controller, the DaemonSet rolls in place, and no node is ever without its images.
    watcher = HoldingWatcher(api_client, namespace, SELECTOR).start_and_wait()
    assert_ok(release.upgrade(f"puller.config.IMAGES={IMAGES}{MORE}"))
    controller.wait_for("config_applied", 60)
    controller.wait_for("daemonset_ready", 90, where=lambda e: e.get("ready") == 3)
    samples = watcher.stop()
    rolled = apps.read_namespaced_daemon_set(NAME, namespace)
    assert [c.name for c in rolled.spec.template.spec.containers] == ["java", "node", "python"]
    assert rolled.metadata.uid == ds.metadata.uid
    assert all(held >= NODES for _, held in samples), [sorted(h) for _, h in samples]
    after = apps.read_namespaced_deployment(NAME, namespace)
    assert after.metadata.generation == deployment.metadata.generation  # no restart
    assert controller.process.poll() is None
    assert release.revision() == 2

    # Upgrade with a value the schema refuses: refused by name, and nothing changes.
    configmap = core.read_namespaced_config_map(NAME, namespace)
    refused = release.upgrade("puller.config.LOG_LEVEL=loud", "puller.config.REFRESH_MAX_SURGE=0")
    assert refused.returncode != 0
    assert "at '/puller/config/LOG_LEVEL'" in refused.stderr, refused.stderr
    assert "at '/puller/config/REFRESH_MAX_SURGE'" in refused.stderr, refused.stderr
    assert release.revision() == 2
    unchanged = core.read_namespaced_config_map(NAME, namespace)
    assert unchanged.metadata.resource_version == configmap.metadata.resource_version
    still = apps.read_namespaced_daemon_set(NAME, namespace)
    assert still.metadata.generation == rolled.metadata.generation

    # Uninstall (the pod goes with its Deployment; here the process is stopped): nothing left.
    assert controller.stop() == 0
    assert_ok(release.uninstall())
    wait_until(
        lambda: gone(apps.read_namespaced_daemon_set, NAME, namespace),
        60,
        "the DaemonSet to be collected with the Deployment",
    )
    assert gone(apps.read_namespaced_deployment, NAME, namespace)
    assert gone(core.read_namespaced_config_map, NAME, namespace)
    assert gone(core.read_namespaced_service_account, NAME, namespace)
    assert gone(rbac.read_namespaced_role, NAME, namespace)
    assert gone(rbac.read_namespaced_role_binding, NAME, namespace)
    assert helm_secrets(core, namespace, "imagepuller") == []
    assert not core.list_namespaced_pod(namespace, label_selector=SELECTOR).items or wait_until(
        lambda: not core.list_namespaced_pod(namespace, label_selector=SELECTOR).items,
        60,
        "the DaemonSet's pods to be gone",
    )
    print(f"\nhelm puller: install, upgrade, refused upgrade, uninstall in "
          f"{time.monotonic() - started:.1f}s")  # fmt: skip


# --- the operator ----------------------------------------------------------------------------


@pytest.fixture
def crd_left_to_helm(cluster, api_client) -> Iterator[None]:
    """No KubernetesImagePuller CRD while the test runs (the chart makes it, and refuses to
    take over one it did not make); the session's CRD (tests/cluster/conftest.py `crd`) is
    applied again afterwards for the tests that follow."""
    extensions = client.ApiextensionsV1Api(api_client)

    def no_crd() -> bool:
        return gone(extensions.read_custom_resource_definition, CRD_NAME)

    if not no_crd():
        extensions.delete_custom_resource_definition(CRD_NAME)
    wait_until(no_crd, 60, "the session's CRD to be deleted")
    try:
        yield
    finally:
        # Whatever a failed test left: a binding whose ConfigMap is gone would refuse every
        # resource of the later tests.
        kubectl(cluster, "delete", "validatingadmissionpolicybinding,validatingadmissionpolicy",
                POLICY, "--ignore-not-found")  # fmt: skip
        kubectl(cluster, "delete", "clusterrolebinding,clusterrole", "imagepuller-operator",
                "--ignore-not-found")  # fmt: skip
        if not no_crd():
            extensions.delete_custom_resource_definition(CRD_NAME)
            wait_until(no_crd, 60, "the CRD kept by the test to be deleted")
        kubectl(cluster, "apply", "-f", str(CRD))
        kubectl(cluster, "wait", "--for=condition=Established", "--timeout=60s",
                f"crd/{CRD_NAME}")  # fmt: skip


@pytest.fixture
def release_namespace(api_client) -> Iterator[str]:
    core = client.CoreV1Api(api_client)
    name = f"helm-op-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        core.delete_namespace(name)


def test_the_operator_installs_with_a_resource_upgrades_in_place_and_uninstalls_clean(
    cluster, api_client, namespace, release_namespace, helm_tools, crd_left_to_helm, tmp_path
):
    started = time.monotonic()
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    rbac = client.RbacAuthorizationV1Api(api_client)
    extensions = client.ApiextensionsV1Api(api_client)
    admission = client.AdmissionregistrationV1Api(api_client)
    release = Release(
        helm_tools, cluster, "imagepuller-operator", release_namespace, tmp_path / "h"
    )
    resource = (
        "kubernetesImagePullers[0].name=images",
        f"kubernetesImagePullers[0].namespace={namespace}",
    )

    installed = release.install("mode=operator", *resource,
                                f"kubernetesImagePullers[0].spec.images={IMAGES}")  # fmt: skip
    try:
        assert_ok(installed)
        assert "kubectl get kubernetesimagepullers -A" in installed.stdout  # NOTES.txt
        kubeconfig = serviceaccount_kubeconfig(
            cluster, api_client, release_namespace, "imagepuller-operator", tmp_path / "sa"
        )
        operator = operator_process(
            kubeconfig, namespace, release_namespace, POD_NAME="imagepuller-operator-6c5b9-k7m2p"
        )
        try:
            operator.wait_for("leader_elected", 30)
            made = ready_status(custom, namespace, "images", 3)
            assert made["status"]["images"] == 2
            ds = apps.read_namespaced_daemon_set(NAME, namespace)

            # Upgrade with one more image: the same resource (adopted from the install hook)
            # and the same DaemonSet, rolled without emptying a node.
            watcher = HoldingWatcher(api_client, namespace, SELECTOR).start_and_wait()
            assert_ok(
                release.upgrade(*resource, f"kubernetesImagePullers[0].spec.images={IMAGES}{MORE}")
            )
            upgraded = wait_until(
                lambda: (
                    (r := ready_status(custom, namespace, "images", 3))["status"]["images"] == 3
                    and r
                ),
                90,
                "the resource Ready with 3 images",
            )
            samples = watcher.stop()
            assert upgraded["metadata"]["uid"] == made["metadata"]["uid"]
            assert "helm.sh/hook" not in upgraded["metadata"].get("annotations", {})
            assert apps.read_namespaced_daemon_set(NAME, namespace).metadata.uid == ds.metadata.uid
            assert all(held >= NODES for _, held in samples), [sorted(h) for _, h in samples]
            assert release.revision() == 2

            # A spec value the schema refuses, named in the values' words: nothing changes.
            # (A list entry is given whole: helm's --set of one field of it drops the others.)
            refused = release.upgrade(*resource, "kubernetesImagePullers[0].spec.images=java")
            assert refused.returncode != 0
            assert "at '/kubernetesImagePullers/0/spec/images'" in refused.stderr, refused.stderr
            assert release.revision() == 2
            now = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "images")
            assert now["metadata"]["resourceVersion"] == upgraded["metadata"]["resourceVersion"]
            assert operator.stop() == 0
        finally:
            operator.kill()

        # Uninstall: the CRD, and with it the resource and its DaemonSet, the RBAC, the
        # admission policy and the operator's own objects are gone.
        wait_until(
            lambda: garbage_collector_watches_the_resources(cluster),
            90,
            "the garbage collector to watch KubernetesImagePullers",
        )
        assert_ok(release.uninstall())
        wait_until(
            lambda: gone(extensions.read_custom_resource_definition, CRD_NAME),
            60,
            "the CRD to be deleted",
        )
        wait_until(
            lambda: gone(apps.read_namespaced_daemon_set, NAME, namespace),
            60,
            "the resource's DaemonSet to be collected",
        )
        assert gone(rbac.read_cluster_role, "imagepuller-operator")
        assert gone(rbac.read_cluster_role_binding, "imagepuller-operator")
        assert gone(admission.read_validating_admission_policy, POLICY)
        assert gone(admission.read_validating_admission_policy_binding, POLICY)
        assert gone(apps.read_namespaced_deployment, "imagepuller-operator", release_namespace)
        assert gone(core.read_namespaced_service_account, "imagepuller-operator", release_namespace)
        assert gone(core.read_namespaced_config_map, "imagepuller-admission", release_namespace)
        assert helm_secrets(core, release_namespace, "imagepuller-operator") == []

        # Asked to keep the CRD, uninstall keeps it and removes the rest.
        kept = Release(helm_tools, cluster, "kept", release_namespace, tmp_path / "h")
        assert_ok(kept.install("mode=operator", "operator.crd.keep=true"))
        assert_ok(kept.uninstall())
        assert not gone(extensions.read_custom_resource_definition, CRD_NAME)
        assert gone(rbac.read_cluster_role, "imagepuller-operator")
        assert gone(admission.read_validating_admission_policy_binding, POLICY)
    finally:
        release.uninstall()
    print(f"\nhelm operator: install, upgrade, refused upgrade, uninstall, keep in "
          f"{time.monotonic() - started:.1f}s")  # fmt: skip
