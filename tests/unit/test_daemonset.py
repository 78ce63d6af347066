"""The DaemonSet builder: a pure function of the configuration."""

import copy
import json
import re

import pytest

from imagepuller.config import load_config
from imagepuller.daemonset import (
    CONTROLLER_ANNOTATION,
    NON_ROOT_ID,
    REFRESH_ANNOTATION,
    SPEC_HASH_ANNOTATION,
    build_daemonset,
    selector_labels,
    spec_hash,
)

ENV = {"IMAGES": "zeta=quay.io/a/z:1;alpha=quay.io/a/a:2;mid=quay.io/a/m@sha256:" + "f" * 64}
DEPLOYMENT = {"metadata": {"name": "kubernetes-image-puller", "uid": "1234-abcd"}}


def build(openshift=False, owner=None, controller_id=None, refreshed_at=None, **env):
    return build_daemonset(
        load_config({**ENV, **env}),
        owner=owner,
        openshift=openshift,
        controller_id=controller_id,
        refreshed_at=refreshed_at,
    )


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
    assert SPEC_HASH_ANNOTATION in meta["annotations"]
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


# --- Pull policy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("quay.io/a/z:1", "Always"),
        ("busybox", "Always"),
        ("localhost:5000/x", "Always"),
        ("localhost:5000/x:sha256", "Always"),
        ("quay.io/a/m@sha256:" + "f" * 64, "IfNotPresent"),
        ("quay.io/a/m:1.0@sha256:" + "0" * 64, "IfNotPresent"),
        ("localhost:5000/m@sha512:" + "a" * 128, "IfNotPresent"),
    ],
)
def test_digest_pinned_images_are_pulled_if_not_present_others_always(image, policy):
    (container,) = pod_spec(build(IMAGES=f"x={image}"))["containers"]
    assert container["imagePullPolicy"] == policy


def test_pull_policy_per_container_and_init_container_unchanged():
    spec = pod_spec(build())
    assert [c["imagePullPolicy"] for c in spec["containers"]] == [
        "Always",
        "Always",
        "IfNotPresent",  # mid is pinned by digest: it can never change
    ]
    (init,) = spec["initContainers"]
    assert init["imagePullPolicy"] == "IfNotPresent"


# --- Update strategy ------------------------------------------------------------------------


def test_rolling_is_the_default_strategy_new_pod_ready_before_the_old_one_goes():
    assert build()["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "10%"},
    }


@pytest.mark.parametrize(("surge", "expected"), [("3", 3), ("25%", "25%"), ("100%", "100%")])
def test_rolling_max_surge_is_an_int_or_a_percentage(surge, expected):
    strategy = build(REFRESH_STRATEGY="rolling", REFRESH_MAX_SURGE=surge)["spec"]["updateStrategy"]
    assert strategy["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": expected}
    assert type(strategy["rollingUpdate"]["maxSurge"]) is type(expected)


def test_recreate_strategy_keeps_the_plain_rolling_update():
    spec = build(REFRESH_STRATEGY="recreate", REFRESH_MAX_SURGE="3")["spec"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate"}


# --- Refresh marker -------------------------------------------------------------------------

WHEN = "2026-11-28T20:00:00Z"


def test_no_refresh_marker_unless_asked():
    manifest = build()
    assert REFRESH_ANNOTATION not in manifest["metadata"]["annotations"]
    assert "annotations" not in manifest["spec"]["template"]["metadata"]


def test_refresh_marker_on_the_pod_template_and_the_daemonset():
    manifest = build(refreshed_at=WHEN, DAEMONSET_ANNOTATIONS='{"a": "b"}')
    assert manifest["spec"]["template"]["metadata"]["annotations"] == {
        "a": "b",
        REFRESH_ANNOTATION: WHEN,
    }
    assert manifest["metadata"]["annotations"][REFRESH_ANNOTATION] == WHEN
    assert manifest["metadata"]["annotations"]["a"] == "b"
    # A new time changes the pod template (that is what rolls the pods) and nothing else.
    later = build(refreshed_at="2026-11-28T21:00:00.5Z", DAEMONSET_ANNOTATIONS='{"a": "b"}')
    assert later["spec"]["template"] != manifest["spec"]["template"]
    later["spec"]["template"]["metadata"]["annotations"][REFRESH_ANNOTATION] = WHEN
    later["metadata"]["annotations"][REFRESH_ANNOTATION] = WHEN
    assert later == manifest


@pytest.mark.parametrize(
    "when", ["", "yesterday", "2026-11-28 20:00:00Z", "2026-11-28T20:00:00", "2026-11-28"]
)
def test_refresh_marker_must_be_an_rfc3339_utc_time(when):
    with pytest.raises(ValueError, match="RFC 3339"):
        build(refreshed_at=when)


# --- Spec hash ------------------------------------------------------------------------------


def annotation_hash(manifest):
    return manifest["metadata"]["annotations"][SPEC_HASH_ANNOTATION]


def test_spec_hash_annotation_is_the_hash_of_the_body():
    manifest = build()
    value = annotation_hash(manifest)
    assert re.fullmatch(r"[0-9a-f]{16}", value)
    assert spec_hash(manifest) == value
    before = copy.deepcopy(manifest)
    spec_hash(manifest)
    assert manifest == before  # the hash reads, never changes, the body


def test_spec_hash_ignores_owner_controller_and_refresh_time():
    plain = build()
    assert SPEC_HASH_ANNOTATION in plain["metadata"]["annotations"]
    for other in (
        build(owner=DEPLOYMENT),
        build(controller_id="host/42"),
        build(refreshed_at=WHEN),
        build(owner=DEPLOYMENT, controller_id="other/1", refreshed_at="2030-01-01T00:00:00Z"),
    ):
        assert annotation_hash(other) == annotation_hash(plain)
        assert spec_hash(other) == spec_hash(plain)
    with_id = build(controller_id="host/42")
    assert with_id["metadata"]["annotations"][CONTROLLER_ANNOTATION] == "host/42"


def test_spec_hash_ignores_key_order():
    manifest = build(refreshed_at=WHEN)
    reordered = json.loads(json.dumps(manifest))
    reordered["spec"] = dict(reversed(list(reordered["spec"].items())))
    reordered["metadata"]["labels"] = dict(reversed(list(reordered["metadata"]["labels"].items())))
    assert spec_hash(reordered) == spec_hash(manifest)


@pytest.mark.parametrize(
    "change",
    [
        {"IMAGES": ENV["IMAGES"].replace("a/z:1", "a/z:2")},
        {"IMAGES": "alpha=quay.io/a/a:2;zeta=quay.io/a/z:1;mid=quay.io/a/m@sha256:" + "f" * 64},
        {"IMAGES": "zeta=quay.io/a/z:1;alpha=quay.io/a/a:2"},
        {"KIP_IMAGE": "quay.io/me/puller:8"},
        {"CACHING_MEMORY_LIMIT": "40Mi"},
        {"CACHING_MEMORY_REQUEST": "5Mi"},
        {"CACHING_CPU_LIMIT": "1"},
        {"CACHING_CPU_REQUEST": "10m"},
        {"NODE_SELECTOR": '{"pool": "a"}'},
        {"AFFINITY": AFFINITY},
        {"TOLERATIONS": '[{"key": "dedicated", "operator": "Exists"}]'},
        {"IMAGE_PULL_SECRETS": "reg1"},
        {"DAEMONSET_ANNOTATIONS": '{"a": "b"}'},
        {"DAEMONSET_NAME": "cache"},
        {"REFRESH_STRATEGY": "recreate"},
        {"REFRESH_MAX_SURGE": "20%"},
        {"REFRESH_MAX_SURGE": "10"},
    ],
    ids=lambda change: ",".join(change),
)
def test_spec_hash_changes_with_what_the_controller_sets(change):
    assert annotation_hash(build(**change)) != annotation_hash(build())


def test_spec_hash_changes_on_openshift():
    assert annotation_hash(build(openshift=True)) != annotation_hash(build())


def test_spec_hash_ignores_settings_that_do_not_shape_the_daemonset():
    same = build(
        CACHING_INTERVAL_HOURS="5",
        READY_TIMEOUT="1h",
        LOG_LEVEL="debug",
        DEPLOYMENT_NAME="x",
        CONFIGMAP_NAME="cm",
    )
    assert annotation_hash(same) == annotation_hash(build())


def test_spec_hash_of_an_edited_body():
    manifest = build()
    edited = copy.deepcopy(manifest)
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "quay.io/a/z:3"
    assert spec_hash(edited) != spec_hash(manifest)
    edited = copy.deepcopy(manifest)
    edited["metadata"]["annotations"]["someone"] = "else"
    assert spec_hash(edited) != spec_hash(manifest)
    edited = copy.deepcopy(manifest)
    edited["metadata"]["labels"]["extra"] = "label"
    assert spec_hash(edited) != spec_hash(manifest)
    # The volatile annotations do not count, wherever they are.
    edited = copy.deepcopy(manifest)
    edited["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = "0" * 16
    edited["metadata"]["annotations"][CONTROLLER_ANNOTATION] = "x/1"
    edited["metadata"]["annotations"][REFRESH_ANNOTATION] = WHEN
    edited["spec"]["template"]["metadata"]["annotations"] = {REFRESH_ANNOTATION: WHEN}
    edited["metadata"]["ownerReferences"] = [{"name": "x"}]
    edited["metadata"]["resourceVersion"] = "7"
    assert spec_hash(edited) == spec_hash(manifest)


def test_spec_hash_of_a_body_without_annotations():
    manifest = build()
    del manifest["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{16}", spec_hash(manifest))


def test_selector_does_not_match_the_pullers_own_pod():
    # The controller's pod labels, as manifests/ set them with the default names.
    controller_pod = {
        "app.kubernetes.io/name": "kubernetes-image-puller",
        "app.kubernetes.io/instance": "kubernetes-image-puller",
        "app.kubernetes.io/component": "controller",
    }
    selector = build()["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= controller_pod.items()
