"""The API objects as the puller reads them: typed views, and one rule per fact read off them.

Objects travel as the JSON the API returns (``kube``), so the views are TypedDicts over those
dicts, not classes: nothing is copied. A field the API may omit is optional, and one it may
send as null says so (``| None``), so a reader has to handle both. Whether an object is being
deleted, whose controller owns it, when it was made, whether a DaemonSet has rolled out: each
is decided here and nowhere else.

Every accessor takes any mapping, so a caller holding a plain ``dict[str, Any]`` from the API
and one holding a view read the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict, cast

from imagepuller.apitime import parse_time


class OwnerReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    uid: str
    # Only one reference of an object is its controller's.
    controller: bool | None
    blockOwnerDeletion: bool | None


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    generation: int
    resourceVersion: str
    creationTimestamp: str
    deletionTimestamp: str | None
    labels: dict[str, str] | None
    annotations: dict[str, str] | None
    ownerReferences: list[OwnerReference] | None


class LabelSelector(TypedDict, total=False):
    matchLabels: dict[str, str] | None
    matchExpressions: list[dict[str, Any]] | None


class PodTemplate(TypedDict, total=False):
    metadata: ObjectMeta
    spec: dict[str, Any]


class DaemonSetSpec(TypedDict, total=False):
    selector: LabelSelector
    template: PodTemplate


class DaemonSetStatus(TypedDict, total=False):
    desiredNumberScheduled: int
    updatedNumberScheduled: int
    numberAvailable: int
    numberReady: int
    observedGeneration: int


class KubeObject(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta


class DaemonSet(KubeObject, total=False):
    spec: DaemonSetSpec
    status: DaemonSetStatus | None


class Deployment(KubeObject, total=False):
    """Only as the owner of a DaemonSet: its name, uid and kind are read, never its spec."""

    spec: dict[str, Any]


class ImagePullerResource(KubeObject, total=False):
    """A KubernetesImagePuller: its spec is read as settings (``resource``), field by field."""

    spec: dict[str, Any] | None
    status: dict[str, Any] | None


def metadata(obj: Mapping[str, Any]) -> ObjectMeta:
    """``obj``'s metadata ({} when it has none, as a body only half built)."""
    # Sound: every object the API returns, and every body we build, has its metadata in this
    # shape; the view declares each field optional or nullable where the API allows it.
    return cast(ObjectMeta, obj.get("metadata") or {})


def name(obj: Mapping[str, Any]) -> str:
    """The name; an object without one is malformed (KeyError), as a name is never optional."""
    return metadata(obj)["name"]


def namespace(obj: Mapping[str, Any]) -> str:
    """The namespace ("" for a cluster-scoped object, or a body that leaves it to the call)."""
    return metadata(obj).get("namespace") or ""


def uid(obj: Mapping[str, Any]) -> str | None:
    """The uid the API gave it (None: not written yet)."""
    return metadata(obj).get("uid") or None


def stored_uid(obj: Mapping[str, Any]) -> str:
    """The uid of an object read from the API, which always has one: a write guarded by it
    must never go out unguarded, so a missing one is a KeyError, not None."""
    return metadata(obj)["uid"]


def stored_resource_version(obj: Mapping[str, Any]) -> str:
    """The resourceVersion of an object read from the API, for a write guarded by it (a
    replace): missing, it is a KeyError, never an unguarded write."""
    return metadata(obj)["resourceVersion"]


def resource_version(obj: Mapping[str, Any]) -> str | None:
    return metadata(obj).get("resourceVersion") or None


def generation(obj: Mapping[str, Any]) -> int:
    """The spec's generation (0 when the API has not given it one)."""
    return int(metadata(obj).get("generation") or 0)


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    """Absent and null are the same: no labels."""
    return metadata(obj).get("labels") or {}


def annotations_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    """Absent and null are the same: no annotations."""
    return metadata(obj).get("annotations") or {}


def annotation(obj: Mapping[str, Any], key: str) -> str | None:
    return annotations_of(obj).get(key)


def being_deleted(obj: Mapping[str, Any]) -> bool:
    """Deletion has begun: the API set deletionTimestamp, and the object stays until its
    finalizers (foreground deletion: its pods) are done."""
    return bool(metadata(obj).get("deletionTimestamp"))


def creation_timestamp(obj: Mapping[str, Any]) -> str:
    """As the API wrote it ("" when not written): RFC 3339 in UTC sorts in time order."""
    return metadata(obj).get("creationTimestamp") or ""


def created_at(obj: Mapping[str, Any]) -> float | None:
    """When the API created it, in wall-clock seconds (None: unknown)."""
    return parse_time(metadata(obj).get("creationTimestamp"))


def deleted_at(obj: Mapping[str, Any]) -> float | None:
    """When its deletion was asked for, in wall-clock seconds (None: it is not being deleted)."""
    return parse_time(metadata(obj).get("deletionTimestamp"))


def owner_references(obj: Mapping[str, Any]) -> list[OwnerReference]:
    """Absent and null are the same: no owners."""
    return list(metadata(obj).get("ownerReferences") or [])


def controller_reference(obj: Mapping[str, Any]) -> OwnerReference | None:
    """The owner reference that says which object controls ``obj`` (None: no controller)."""
    for ref in owner_references(obj):
        # An entry that is not an object is malformed, never a controller.
        if isinstance(ref, dict) and ref.get("controller") is True:
            return ref
    return None


def owned_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    """Some owner reference of ``obj``, its controller's or another, names ``owner_uid``."""
    return any(
        isinstance(ref, dict) and ref.get("uid") == owner_uid for ref in owner_references(obj)
    )


def selector_labels(daemonset: Mapping[str, Any]) -> Mapping[str, str]:
    """The matchLabels of a DaemonSet's (immutable) pod selector ({} when it has none)."""
    # Sound: a DaemonSet's spec has this shape, each field optional.
    spec = cast(DaemonSetSpec, daemonset.get("spec") or {})
    return (spec.get("selector") or {}).get("matchLabels") or {}


def daemonset_status(daemonset: Mapping[str, Any]) -> DaemonSetStatus:
    """The status the DaemonSet controller wrote ({} before it wrote any)."""
    # Sound as ``metadata`` is: the API's DaemonSet status has these fields, all optional.
    return cast(DaemonSetStatus, daemonset.get("status") or {})


def generation_observed(daemonset: Mapping[str, Any]) -> bool:
    """The DaemonSet controller has taken in the current generation (its status is of it)."""
    observed = daemonset_status(daemonset).get("observedGeneration", -1)
    return observed >= int(metadata(daemonset).get("generation", 0))


def rollout(daemonset: Mapping[str, Any]) -> tuple[bool, int, int]:
    """(complete, pods up to date and available, desired): complete when the DaemonSet
    controller has seen this generation and every scheduled node runs an available pod of
    the current template. ``numberReady`` alone is not enough: during a rolling refresh the
    old pods are ready too."""
    status = daemonset_status(daemonset)
    desired = int(status.get("desiredNumberScheduled", 0))
    updated = int(status.get("updatedNumberScheduled", 0))
    available = int(status.get("numberAvailable", 0))
    seen = generation_observed(daemonset)
    complete = seen and updated == desired and available == desired
    return complete, min(updated, available) if seen else 0, desired


def label_selector(selector: Mapping[str, Any]) -> str:
    """A LabelSelector (matchLabels, matchExpressions) in the API's query syntax."""
    terms = [f"{key}={value}" for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = ",".join(expression.get("values") or [])
        if operator == "In":
            terms.append(f"{key} in ({values})")
        elif operator == "NotIn":
            terms.append(f"{key} notin ({values})")
        elif operator == "Exists":
            terms.append(key)
        elif operator == "DoesNotExist":
            terms.append(f"!{key}")
    return ",".join(terms)
