"""The KubernetesImagePuller CRD on the real API server: served as the community operator serves
it, so the documentation's resource, the Che operator's labels and full updates, and status
writes through the subresource all work, and `kubectl get` shows the printer columns."""

from __future__ import annotations

import json

from imagepuller.resource import GROUP, PLURAL, VERSION, config_from_resource
from tests.cluster.conftest import DOC_IMAGES, apply_documented_resource, kubectl
from tests.waiting import wait_until

IMAGES = DOC_IMAGES


def custom(api_client):
    from kubernetes import client

    return client.CustomObjectsApi(api_client)


def test_discovery_serves_the_resource_as_the_che_operator_checks_it(crd, cluster):
    resources = json.loads(kubectl(cluster, "get", "--raw", f"/apis/{GROUP}/{VERSION}"))
    by_name = {r["name"]: r for r in resources["resources"]}
    assert by_name[PLURAL]["kind"] == "KubernetesImagePuller"
    assert by_name[PLURAL]["namespaced"] is True
    assert "shortNames" not in by_name[PLURAL]
    assert f"{PLURAL}/status" in by_name


def test_the_documentations_resource_and_the_che_operators_full_update(
    crd, cluster, api_client, namespace
):
    # §3.6.5, as the documentation applies it.
    apply_documented_resource(cluster, namespace)
    api = custom(api_client)
    stored = api.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "k8s-image-puller-images"
    )
    assert stored["spec"] == {"images": IMAGES}
    assert config_from_resource(stored).namespace == namespace

    # The Che operator: its labels, every field it fills, then a full Update with new images.
    che = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "KubernetesImagePuller",
        "metadata": {
            "name": "devspaces-image-puller",
            "labels": {
                "app.kubernetes.io/component": "kubernetes-image-puller",
                "app.kubernetes.io/part-of": "che.eclipse.org",
                "app.kubernetes.io/managed-by": "devspaces-operator",
            },
        },
        "spec": {
            "configMapName": "k8s-image-puller",
            "deploymentName": "kubernetes-image-puller",
            "imagePullerImage": "quay.io/eclipse/kubernetes-image-puller:next",
            "images": "code=quay.io/che-incubator/che-code:latest;",
            "cachingCPURequest": ".05",
            "tolerations": "[]",
        },
    }
    created = api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, che)
    assert created["spec"] == che["spec"]  # nothing pruned, nothing defaulted
    updated_spec = {**che["spec"], "images": "idea=quay.io/che-incubator/che-idea:next;"}
    replaced = api.replace_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "devspaces-image-puller",
        {**created, "spec": updated_spec},
    )
    assert replaced["spec"] == updated_spec
    assert replaced["metadata"]["generation"] == 2
    assert config_from_resource(replaced).images[0].name == "idea"


def test_status_goes_through_its_subresource_and_kubectl_shows_the_columns(
    crd, cluster, api_client, namespace
):
    api = custom(api_client)
    created = api.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "KubernetesImagePuller",
            "metadata": {"name": "puller"},
            "spec": {"images": IMAGES},
        },
    )
    status = {
        "imagePullerImage": "registry.redhat.io/devspaces/imagepuller-rhel8:latest",
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "AllNodesHoldAllImages",
                "message": "All 2 images held on 3/3 nodes",
                "lastTransitionTime": "2026-11-28T20:00:00Z",
            }
        ],
        "nodes": {"desired": 3, "ready": 3},
        "images": 2,
        "lastRefreshTime": "2026-11-28T20:00:00Z",
        "failures": [],
        "failuresTotal": 0,
    }
    written = api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "puller", {"status": status}
    )
    assert written["status"] == status
    assert written["metadata"]["generation"] == created["metadata"]["generation"]
    assert written["spec"] == created["spec"]
    # A status in the main resource is ignored (the subresource owns it).
    api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "puller", {"status": {"images": 99}}
    )
    assert (
        api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "puller")["status"][
            "images"
        ]
        == 2
    )

    table = wait_until(
        lambda: (
            (out := kubectl(cluster, "-n", namespace, "get", PLURAL)) and "puller" in out and out
        ),
        30,
        "kubectl get to list the resource",
    )
    header, *rows = table.splitlines()
    assert header.split() == [
        "NAME",
        "READY",
        "NODES",
        "DESIRED",
        "IMAGES",
        "LAST",
        "REFRESH",
        "AGE",
    ]
    (row,) = [r for r in rows if r.startswith("puller ")]
    assert row.split()[1:5] == ["True", "3", "3", "2"]
