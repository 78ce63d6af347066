"""Fixtures of the controller's cluster tests: the API groups, and `imagepuller run` started
with the admin kubeconfig in the test's namespace."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from imagepuller.resource import GROUP, PLURAL
from tests.apiobjects import read_or_none
from tests.controller_process import ControllerProcess, operator_process
from tests.waiting import wait_until

IMAGES = "java=quay.io/eclipse/che-java17-maven:next;node=docker.io/library/node:20-alpine;"
NAME = "kubernetes-image-puller"


@pytest.fixture
def apps(api_client):
    return client.AppsV1Api(api_client)


@pytest.fixture
def core(api_client):
    return client.CoreV1Api(api_client)


@pytest.fixture
def start_controller(cluster, namespace, controllers):
    """`controllers` with these defaults: the admin kubeconfig, the test namespace."""

    def start(**env: str) -> ControllerProcess:
        return controllers(
            {
                "KUBECONFIG": str(cluster.kubeconfig),
                "NAMESPACE": namespace,
                "IMAGES": IMAGES,
                "READY_TIMEOUT": "60s",
                **env,
            }
        )

    return start


def read_ds(apps, namespace, name=NAME):
    return read_or_none(apps.read_namespaced_daemon_set, name, namespace)


def make_refresh_due(apps, namespace, name=NAME) -> None:
    """Move the last refresh an interval into the past, as if the hour had gone by: the
    schedule lives in this annotation, and the controller reads it again when it changes."""
    apps.patch_namespaced_daemon_set(
        name,
        namespace,
        {"metadata": {"annotations": {"imagepuller.io/refreshed-at": "2020-01-01T00:00:00Z"}}},
    )


@pytest.fixture
def owner_deployment(apps, namespace):
    """The puller's own Deployment (no replicas: only its identity matters here)."""
    return apps.create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": NAME},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "puller"}},
                "template": {
                    "metadata": {"labels": {"app": "puller"}},
                    "spec": {"containers": [{"name": "puller", "image": "quay.io/x/puller:1"}]},
                },
            },
        },
    )


CRD = Path(__file__).resolve().parents[2] / "manifests" / "operator" / "crd.yaml"


def kubectl(cluster, *args: str, stdin: str | None = None) -> str:
    """The built kubectl as the cluster's admin; its output (fails the test on an error)."""
    return subprocess.run(
        ["kubectl", *args],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


@pytest.fixture(scope="session")
def crd(cluster):
    """The KubernetesImagePuller CRD, applied once and Established (kept for the session)."""
    kubectl(cluster, "apply", "-f", str(CRD))
    kubectl(cluster, "wait", "--for=condition=Established", "--timeout=60s",
            f"crd/{PLURAL}.{GROUP}")  # fmt: skip
    return CRD


@contextlib.contextmanager
def fixed_namespace(api_client, name: str) -> Iterator[str]:
    """A namespace with a fixed name (as documented commands use): waits until one left by
    an earlier test is gone, and after the test deletes it and waits until it is."""
    core = client.CoreV1Api(api_client)

    def gone() -> bool:
        return read_or_none(core.read_namespace, name) is None

    wait_until(gone, 90, f"namespace {name} left from before to be gone")
    try:
        yield name
    finally:
        if not gone():
            core.delete_namespace(name)
        wait_until(gone, 90, f"namespace {name} to be deleted")


# The documentation's §3.6.5 resource, with images that the local cluster's kwok stages pull.
DOC_RESOURCE = "k8s-image-puller-images"
DOC_IMAGES = "java=quay.io/eclipse/che-java17-maven:next;node=docker.io/library/node:20-alpine;"


def apply_documented_resource(cluster, namespace: str) -> None:
    """§3.6.5 as the documentation does it: the resource applied from a here-document."""
    kubectl(
        cluster,
        "apply",
        "-f",
        "-",
        stdin=f"""apiVersion: che.eclipse.org/v1alpha1
kind: KubernetesImagePuller
metadata:
  name: {DOC_RESOURCE}
  namespace: {namespace}
spec:
  images: "{DOC_IMAGES}"
""",
    )


@pytest.fixture
def custom(api_client):
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def operators(cluster, namespace):
    """``operators(*watched)`` runs `imagepuller operator` for those namespaces; its Lease in
    the test's namespace. Every one is killed after the test."""
    started: list[ControllerProcess] = []

    def start(*watched: str, **env: str) -> ControllerProcess:
        process = operator_process(cluster.kubeconfig, ",".join(watched), namespace, **env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
