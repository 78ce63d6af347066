"""The DaemonSet that keeps every configured image on every node: a pure function of Config.

Each pod runs one container per image, in the order configured. The containers run a static
`sleep` that the init container copies from KIP_IMAGE into a shared emptyDir, so images with
no shell and no libc (scratch images) can be held too. `imagePullPolicy: Always` makes every
recreation pull mutable tags again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from imagepuller.config import INIT_CONTAINER_NAME, Config

APP_NAME = "kubernetes-image-puller"
MANAGED_BY = "imagepuller"
# The Go original labelled its DaemonSets this way; recognising it lets us take over a
# DaemonSet it left behind when an installation migrates to this puller.
LEGACY_LABELS = {"test": "daemonset-test"}
CONFIG_HASH_ANNOTATION = "imagepuller.io/config-hash"
# Which running controller made the DaemonSet, so that two of them notice each other.
CONTROLLER_ANNOTATION = "imagepuller.io/controller"

SLEEP_VOLUME = "kip"
SLEEP_MOUNT = "/kip"
# Longer than any sensible caching interval; if it ever ends, the kubelet restarts it.
SLEEP_DURATION = "720h"
# A fixed non-root identity for plain Kubernetes. On OpenShift the SCC assigns one from the
# namespace's range and rejects a fixed one outside it, so none is set there.
NON_ROOT_ID = 65532


def selector_labels(config: Config) -> dict[str, str]:
    # The component keeps this selector apart from the puller's own Deployment, which has the
    # same name and (with the default names) the same instance: each must select only its pods.
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": config.daemonset_name,
        "app.kubernetes.io/component": "image-cache",
    }


def object_labels(config: Config) -> dict[str, str]:
    return {**selector_labels(config), "app.kubernetes.io/managed-by": MANAGED_BY}


def owner_reference(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """Owner reference to the puller's Deployment: deleting it deletes the DaemonSet."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
        "uid": deployment["metadata"]["uid"],
        "controller": True,
        # No blockOwnerDeletion: where OwnerReferencesPermissionEnforcement is on (OpenShift)
        # setting it needs `update deployments/finalizers`, a permission we do not want. The
        # garbage collector still deletes the DaemonSet when the Deployment goes.
    }


def config_hash(config: Config) -> str:
    """A short digest of what shapes the pods; shows in the object which config made it."""
    blob = json.dumps(config.summary(), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def build_daemonset(
    config: Config,
    *,
    owner: Mapping[str, Any] | None = None,
    openshift: bool = False,
    controller_id: str | None = None,
) -> dict[str, Any]:
    """The DaemonSet manifest for ``config``; ``owner`` is the puller's Deployment, if any,
    ``controller_id`` names the running controller that creates it."""
    annotations = {**config.daemonset_annotations, CONFIG_HASH_ANNOTATION: config_hash(config)}
    if controller_id:
        annotations[CONTROLLER_ANNOTATION] = controller_id
    metadata: dict[str, Any] = {
        "name": config.daemonset_name,
        "namespace": config.namespace,
        "labels": object_labels(config),
        "annotations": annotations,
    }
    if owner is not None:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": selector_labels(config)},
            # The controller recreates the DaemonSet to refresh it; a spec update never happens,
            # but RollingUpdate is the safe default should anyone edit it by hand.
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": _template_metadata(config),
                "spec": _pod_spec(config, openshift=openshift),
            },
        },
    }


def _template_metadata(config: Config) -> dict[str, Any]:
    metadata: dict[str, Any] = {"labels": object_labels(config)}
    if config.daemonset_annotations:
        metadata["annotations"] = dict(config.daemonset_annotations)
    return metadata


def _pod_spec(config: Config, *, openshift: bool) -> dict[str, Any]:
    pod_security: dict[str, Any] = {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if not openshift:
        pod_security |= {
            "runAsUser": NON_ROOT_ID,
            "runAsGroup": NON_ROOT_ID,
            "fsGroup": NON_ROOT_ID,
        }
    spec: dict[str, Any] = {
        # The pods only sleep: they need neither API credentials nor service env variables.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # `sleep` exits at once on SIGTERM; a short grace keeps refreshes and deletion quick.
        "terminationGracePeriodSeconds": 5,
        "securityContext": pod_security,
        "initContainers": [_copy_sleep_container(config)],
        "containers": [
            _image_container(config, image.name, image.image) for image in config.images
        ],
        "volumes": [{"name": SLEEP_VOLUME, "emptyDir": {}}],
    }
    if config.node_selector:
        spec["nodeSelector"] = dict(config.node_selector)
    if config.affinity:
        spec["affinity"] = dict(config.affinity)
    if config.tolerations:
        spec["tolerations"] = [dict(t) for t in config.tolerations]
    if config.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in config.image_pull_secrets]
    return spec


def _container_security() -> dict[str, Any]:
    # What the `restricted` Pod Security Standard asks for, on every container.
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }


def _resources(config: Config) -> dict[str, Any]:
    return {
        "requests": {"cpu": config.cpu_request, "memory": config.memory_request},
        "limits": {"cpu": config.cpu_limit, "memory": config.memory_limit},
    }


def _copy_sleep_container(config: Config) -> dict[str, Any]:
    # Same contract as the Go original, so existing puller images work as KIP_IMAGE.
    return {
        "name": INIT_CONTAINER_NAME,
        "image": config.kip_image,
        "command": ["/bin/sh", "-c", f"cp /bin/sleep {SLEEP_MOUNT}/sleep"],
        "imagePullPolicy": "IfNotPresent",
        "resources": _resources(config),
        "securityContext": _container_security(),
        "volumeMounts": [{"name": SLEEP_VOLUME, "mountPath": SLEEP_MOUNT}],
    }


def _image_container(config: Config, name: str, image: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "command": [f"{SLEEP_MOUNT}/sleep"],
        "args": [SLEEP_DURATION],
        "imagePullPolicy": "Always",
        "resources": _resources(config),
        "securityContext": _container_security(),
        "volumeMounts": [{"name": SLEEP_VOLUME, "mountPath": SLEEP_MOUNT}],
    }
