"""The DaemonSet that keeps every configured image on every node: a pure function of Config.

Each pod runs one container per image, in the order configured. The containers run a static
`sleep` that the init container copies from KIP_IMAGE into a shared emptyDir, so images with
no shell and no libc (scratch images) can be held too.

A refresh replaces every pod, so that each node pulls mutable tags again (`imagePullPolicy:
Always`; an image pinned by digest can never change and is `IfNotPresent`). With
REFRESH_STRATEGY=rolling the controller changes one pod-template annotation (``refreshed_at``)
and the DaemonSet rolls with maxUnavailable 0 and maxSurge REFRESH_MAX_SURGE: on each node the
new pod pulls and is ready before the old one goes. With `recreate` the controller deletes the
DaemonSet and creates it again, as the Go original did.

The DaemonSet's annotations hold what the controller needs after a restart: the hash of what it
set (``spec_hash``), to adopt a DaemonSet that is already right, and the last refresh time.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from imagepuller import objects
from imagepuller.config import Config
from imagepuller.imageparsers import INIT_CONTAINER_NAME
from imagepuller.jsonparsers import RESERVED_ANNOTATION_PREFIX

APP_NAME = "kubernetes-image-puller"
MANAGED_BY = "imagepuller"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
# Every DaemonSet any puller made carries this label (object_labels): `status -A` lists by it.
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
# The Go original labelled its DaemonSets this way; recognising it lets us take over a
# DaemonSet it left behind when an installation migrates to this puller.
LEGACY_LABELS = {"test": "daemonset-test"}
# The hash of everything the controller sets that is not volatile (see spec_hash), on the
# DaemonSet: equal to the desired one means the running DaemonSet can be adopted as it is.
SPEC_HASH_ANNOTATION = f"{RESERVED_ANNOTATION_PREFIX}spec-hash"
# Which running controller made the DaemonSet, so that two of them notice each other.
CONTROLLER_ANNOTATION = f"{RESERVED_ANNOTATION_PREFIX}controller"
# When the pods were last refreshed (RFC 3339, UTC). On the pod template, a new value is what
# rolls every pod; on the DaemonSet, it is what a restarted controller reads to keep the schedule.
REFRESH_ANNOTATION = f"{RESERVED_ANNOTATION_PREFIX}refreshed-at"
# Annotations that change without the desired DaemonSet changing; spec_hash leaves them out.
VOLATILE_ANNOTATIONS = frozenset({SPEC_HASH_ANNOTATION, CONTROLLER_ANNOTATION, REFRESH_ANNOTATION})
_RFC3339_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z")
# A reference pinned by digest ends in @<algorithm>:<hex> (config checked the whole reference).
_DIGEST = re.compile(r"@[A-Za-z0-9][A-Za-z0-9+._-]*:[0-9a-f]+\Z")

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
    return {**selector_labels(config), MANAGED_BY_LABEL: MANAGED_BY}


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """Owner reference to the puller's Deployment (or, in operator mode, its
    KubernetesImagePuller resource): deleting the owner deletes the DaemonSet."""
    return {
        "apiVersion": owner.get("apiVersion") or "apps/v1",
        "kind": owner.get("kind") or "Deployment",
        "name": objects.name(owner),
        "uid": objects.stored_uid(owner),
        "controller": True,
        # No blockOwnerDeletion: where OwnerReferencesPermissionEnforcement is on (OpenShift)
        # setting it needs `update deployments/finalizers`, a permission we do not want. The
        # garbage collector still deletes the DaemonSet when the Deployment goes.
    }


def template_containers(daemonset: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A DaemonSet's pod template containers (none in one that is only half there)."""
    template = (daemonset.get("spec") or {}).get("template") or {}
    return (template.get("spec") or {}).get("containers") or []


def spec_hash(daemonset: Mapping[str, Any]) -> str:
    """16 hex digits of sha256 over what the controller sets on ``daemonset`` and keeps:
    its labels, its annotations but the volatile ones, and its whole spec without the refresh
    time on the pod template. Owner, controller, refresh time and anything the API adds to
    metadata do not count. Compare it with the SPEC_HASH_ANNOTATION of a DaemonSet read back,
    not with the hash of that body: the API fills in defaults throughout the spec."""
    annotations = {
        key: value
        for key, value in objects.annotations_of(daemonset).items()
        if key not in VOLATILE_ANNOTATIONS
    }
    spec = copy.deepcopy(dict(daemonset.get("spec") or {}))
    template_metadata = (spec.get("template") or {}).get("metadata") or {}
    template_annotations = template_metadata.get("annotations")
    if template_annotations is not None:
        template_annotations.pop(REFRESH_ANNOTATION, None)
        if not template_annotations:
            del template_metadata["annotations"]  # none left: the same as none given
    canonical = json.dumps(
        {"labels": objects.labels_of(daemonset), "annotations": annotations, "spec": spec},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def build_daemonset(
    config: Config,
    *,
    owner: Mapping[str, Any] | None = None,
    openshift: bool = False,
    controller_id: str | None = None,
    refreshed_at: str | None = None,
) -> dict[str, Any]:
    """The DaemonSet manifest for ``config``; ``owner`` is the puller's Deployment, if any,
    ``controller_id`` names the running controller that creates it, ``refreshed_at`` (RFC 3339
    UTC, such as 2026-11-28T20:00:00Z) the last refresh: on the pod template (a new value rolls
    every pod) and on the DaemonSet (read back after a restart)."""
    if refreshed_at is not None and not _RFC3339_UTC.fullmatch(refreshed_at):
        raise ValueError(
            f"refreshed_at={refreshed_at!r}: expected an RFC 3339 time in UTC, "
            "such as 2026-11-28T20:00:00Z"
        )
    annotations = dict(config.daemonset_annotations)
    if controller_id:
        annotations[CONTROLLER_ANNOTATION] = controller_id
    if refreshed_at is not None:
        annotations[REFRESH_ANNOTATION] = refreshed_at
    metadata: dict[str, Any] = {
        "name": config.daemonset_name,
        "namespace": config.namespace,
        "labels": object_labels(config),
        "annotations": annotations,
    }
    if owner is not None:
        metadata["ownerReferences"] = [owner_reference(owner)]
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": selector_labels(config)},
            "updateStrategy": _update_strategy(config),
            "template": {
                "metadata": _template_metadata(config, refreshed_at),
                "spec": _pod_spec(config, openshift=openshift),
            },
        },
    }
    annotations[SPEC_HASH_ANNOTATION] = spec_hash(daemonset)
    return daemonset


def refresh_patch(refreshed_at: str) -> dict[str, Any]:
    """The merge patch that refreshes a DaemonSet built here: the refresh time, on the pod
    template (a new value rolls every pod) and on the DaemonSet (read back after a restart)."""
    annotations = {REFRESH_ANNOTATION: refreshed_at}
    return {
        "metadata": {"annotations": dict(annotations)},
        "spec": {"template": {"metadata": {"annotations": annotations}}},
    }


def _update_strategy(config: Config) -> dict[str, Any]:
    if config.refresh_strategy == "rolling":
        # On each node the new pod starts, pulls and becomes ready before the old one is
        # stopped (maxUnavailable 0): no node is ever without its images, and at most maxSurge
        # nodes pull at once. A node whose new pod cannot pull keeps its old one.
        return {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": config.refresh_max_surge},
        }
    # recreate: the controller deletes the DaemonSet and creates it again to refresh; the API's
    # default rolling update (one node at a time) only applies to a hand edit.
    return {"type": "RollingUpdate"}


def _template_metadata(config: Config, refreshed_at: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"labels": object_labels(config)}
    annotations = dict(config.daemonset_annotations)
    if refreshed_at is not None:
        annotations[REFRESH_ANNOTATION] = refreshed_at
    if annotations:
        metadata["annotations"] = annotations
    return metadata


def pull_policy(image: str) -> str:
    """`IfNotPresent` for an image pinned by digest (it can never change, so a refresh costs
    the registry nothing), `Always` otherwise (a refresh pulls mutable tags again)."""
    return "IfNotPresent" if _DIGEST.search(image) else "Always"


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
        "imagePullPolicy": pull_policy(image),
        "resources": _resources(config),
        "securityContext": _container_security(),
        "volumeMounts": [{"name": SLEEP_VOLUME, "mountPath": SLEEP_MOUNT}],
    }
