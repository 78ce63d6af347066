"""Whose is a DaemonSet of our name: one rule, by identity rather than by name.

A DaemonSet's controller owner reference (the one with ``controller: true``) names the object
that owns it by uid. When it names another object (another resource, another Deployment, even
one of the same name created anew), the DaemonSet is not ours, whatever its labels say: it is
never changed or deleted, and the puller that wants its name reports the conflict instead. Only
a DaemonSet with no controller owner is judged by the marks a puller of ours leaves on it (the
uid this process created, our label, our immutable selector, the Go original's labels), so a
DaemonSet orphaned by ``kubectl delete --cascade=orphan`` or made by ``imagepuller run`` outside
the cluster can still be adopted.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagepuller import daemonset as ds
from imagepuller import objects
from imagepuller.config import Config


class Whose(enum.Enum):
    OURS = "ours"
    # Controlled by another object: never touched; the name is taken.
    ANOTHER_OWNER = "another_owner"
    # Controlled by an earlier object of our owner's kind and name, since deleted: the garbage
    # collector removes it (nothing of ours may touch it meanwhile), then the name is free.
    EARLIER_OWNER = "earlier_owner"
    # No controller owner and none of our marks: someone else's, left alone.
    FOREIGN = "foreign"


@dataclass(frozen=True)
class Ownership:
    whose: Whose
    # Who owns it, for people: "KubernetesImagePuller first (uid 1234…)"; empty when ownerless.
    owner: str = ""

    @property
    def ours(self) -> bool:
        return self.whose is Whose.OURS


def describe_owner(ref: Mapping[str, Any]) -> str:
    return f"{ref.get('kind') or 'object'} {ref.get('name') or '?'} (uid {ref.get('uid') or '?'})"


def classify(
    observed: Mapping[str, Any],
    config: Config,
    *,
    owner: Mapping[str, Any] | None,
    created_uid: str | None = None,
) -> Ownership:
    """Whose ``observed`` is, for the puller of ``config`` whose DaemonSets ``owner`` owns
    (its Deployment, its KubernetesImagePuller resource, or None when running without one)."""
    owner_uid = objects.uid(owner or {})
    ref = objects.controller_reference(observed)
    if ref is not None:
        if owner_uid and ref.get("uid") == owner_uid:
            return Ownership(Whose.OURS)
        same_name = (
            owner is not None
            and ref.get("kind") == (owner.get("kind") or "Deployment")
            and ref.get("name") == objects.metadata(owner).get("name")
        )
        return Ownership(
            Whose.EARLIER_OWNER if same_name else Whose.ANOTHER_OWNER, describe_owner(ref)
        )
    if created_uid and objects.uid(observed) == created_uid:
        return Ownership(Whose.OURS)
    if owner_uid and objects.owned_by(observed, owner_uid):
        return Ownership(Whose.OURS)
    return Ownership(Whose.OURS if _marked_as_ours(observed, config) else Whose.FOREIGN)


def _marked_as_ours(observed: Mapping[str, Any], config: Config) -> bool:
    labels = objects.labels_of(observed)
    if labels.get(ds.MANAGED_BY_LABEL) == ds.MANAGED_BY:
        return True
    selector = objects.selector_labels(observed)
    # A selector is immutable, and only our DaemonSets select our image-cache pods by name.
    if selector == ds.selector_labels(config):
        return True
    # The Go original put its label only on the selector and the pod template.
    return any(
        all(found.get(k) == v for k, v in ds.LEGACY_LABELS.items()) for found in (labels, selector)
    )
