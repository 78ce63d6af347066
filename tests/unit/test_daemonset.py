"""The DaemonSet builder: a pure function of the configuration."""

import copy
import json

from imagepuller.config import load_config
from imagepuller.daemonset import (
    CONFIG_HASH_ANNOTATION,
    NON_ROOT_ID,
    build_daemonset,
    selector_labels,
)

ENV = {"IMAGES": "zeta=quay.io/a/z:1;alpha=quay.io/a/a:2;mid=quay.io/a/m@sha256:" + "f" * 64}
DEPLOYMENT = {"metadata": {"name": "kubernetes-image-puller", "uid": "1234-abcd"}}


def build(openshift=False, owner=None, **env):
    return build_daemonset(load_config({**ENV, **env}), owner=owner, openshift=openshift)


def pod_spec(manifest):
    return manifest["spec"]["template"]["spec"]


def test_one_container_per_image_in_the_order_given():
    containers = pod_spec(build())["containers"]
    assert [c["name"] for c in containers] == ["zeta", "alpha", "mid"]
    assert [c["image"] for c in containers] == [
        "quay.io/a/z:1",
        "quay.io/a/a:2",
        "quay.io/a/m@sha256:" + "f" * 64,
    ]
    for container in containers:
        assert container["command"] == ["/kip/sleep"]
        assert container["args"] == ["720h"]
        assert container["imagePullPolicy"] == "Always"
        assert container["volumeMounts"] == [{"name": "kip", "mountPath": "/kip"}]


def test_init_container_copies_sleep_from_kip_image():
    spec = pod_spec(build(KIP_IMAGE="quay.io/me/puller:7"))
    (init,) = spec["initContainers"]
    assert init["name"] == "copy-sleep"
    assert init["image"] == "quay.io/me/puller:7"
    assert init["command"] == ["/bin/sh", "-c", "cp /bin/sleep /kip/sleep"]
    assert init["volumeMounts"] == [{"name": "kip", "mountPath": "/kip"}]
    assert spec["volumes"] == [{"name": "kip", "emptyDir": {}}]


def test_resources_on_every_container():
    spec = pod_spec(
        build(
            CACHING_MEMORY_REQUEST="5Mi",
            CACHING_MEMORY_LIMIT="30Mi",
            CACHING_CPU_REQUEST="10m",
            CACHING_CPU_LIMIT="100m",
        )
    )
    for container in spec["initContainers"] + spec["containers"]:
        assert container["resources"] == {
            "requests": {"cpu": "10m", "memory": "5Mi"},
            "limits": {"cpu": "100m", "memory": "30Mi"},
        }


def test_restricted_security_on_plain_kubernetes():
    spec = pod_spec(build())
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": NON_ROOT_ID,
        "runAsGroup": NON_ROOT_ID,
        "fsGroup": NON_ROOT_ID,
    }
    for container in spec["initContainers"] + spec["containers"]:
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["readOnlyRootFilesystem"] is True
        assert security["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False


def test_openshift_sets_no_fixed_ids():
    security = pod_spec(build(openshift=True))["securityContext"]
    assert security == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    manifest = build(openshift=True)
    for container in pod_spec(manifest)["containers"] + pod_spec(manifest)["initContainers"]:
        assert "runAsUser" not in container["securityContext"]


AFFINITY = json.dumps(
    {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 1,
                    "preference": {
                        "matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]
                    },
                }
            ]
        }
    }
)


def test_scheduling_settings_are_passed_through():
    spec = pod_spec(
        build(
            NODE_SELECTOR='{"pool": "workspaces"}',
            AFFINITY=AFFINITY,
            TOLERATIONS='[{"key": "dedicated", "operator": "Exists"}]',
            IMAGE_PULL_SECRETS="reg1;reg2",
        )
    )
    assert spec["nodeSelector"] == {"pool": "workspaces"}
    assert spec["affinity"] == json.loads(AFFINITY)
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert spec["imagePullSecrets"] == [{"name": "reg1"}, {"name": "reg2"}]


def test_unset_scheduling_settings_are_left_out():
    spec = pod_spec(build())
    for key in ("nodeSelector", "affinity", "tolerations", "imagePullSecrets"):
        assert key not in spec


def test_names_labels_and_annotations():
    manifest = build(DAEMONSET_NAME="cache", NAMESPACE="tools", DAEMONSET_ANNOTATIONS='{"a": "b"}')
    meta = manifest["metadata"]
    assert (meta["name"], meta["namespace"]) == ("cache", "tools")
    assert meta["labels"] == {
        "app.kubernetes.io/name": "kubernetes-image-puller",
        "app.kubernetes.io/instance": "cache",
        "app.kubernetes.io/component": "image-cache",
        "app.kubernetes.io/managed-by": "imagepuller",
    }
    assert meta["annotations"]["a"] == "b"
    assert CONFIG_HASH_ANNOTATION in meta["annotations"]
    template = manifest["spec"]["template"]["metadata"]
    assert template["annotations"] == {"a": "b"}
    selector = manifest["spec"]["selector"]["matchLabels"]
    assert selector == selector_labels(load_config({**ENV, "DAEMONSET_NAME": "cache"}))
    assert selector.items() <= template["labels"].items()
    # No leftover test labels from the original.
    assert "test" not in meta["labels"] and "test" not in template["labels"]


def test_owner_reference_to_the_deployment():
    manifest = build(owner=DEPLOYMENT)
    assert manifest["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "kubernetes-image-puller",
            "uid": "1234-abcd",
            "controller": True,
        }
    ]
    assert "ownerReferences" not in build()["metadata"]


def test_pure_and_deterministic():
    config = load_config(ENV)
    before = copy.deepcopy(config)
    assert build_daemonset(config) == build_daemonset(config)
    assert config == before


def test_config_hash_changes_with_the_configuration():
    one = build()["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    two = build(CACHING_MEMORY_LIMIT="40Mi")["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    assert one != two


def test_selector_does_not_match_the_pullers_own_pod():
    # The controller's pod labels, as manifests/ set them with the default names.
    controller_pod = {
        "app.kubernetes.io/name": "kubernetes-image-puller",
        "app.kubernetes.io/instance": "kubernetes-image-puller",
        "app.kubernetes.io/component": "controller",
    }
    selector = build()["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= controller_pod.items()
