"""Which node holds which image: one puller's cache, per node and per image.

Pure: the DaemonSet, its pods and (when readable) the nodes go in, as the API returns them
(plain dicts, camelCase keys), and a ``PullerStatus`` comes out. Nothing here calls the API,
so `imagepuller status`, the controller's metrics or an operator's status can share it.

A node *holds* an image when a pod of the DaemonSet on it, not being deleted, has that image's
container ready: during a rolling refresh the old pod still holds while the new one pulls.
Otherwise the newest pod on the node says why not: a failure the kubelet reports (with its
reason and message), or progress (``pulling``). When an older pod holds an image that the
newest pod (a refresh's) fails to pull, the node still holds it, and the failure is reported
too, marked ``still_held``: a refresh that cannot pull is never hidden behind the old pod.
A node the pods are not meant for (a node selector, a required node affinity, a taint not
tolerated) is ``not-scheduled``, and why; that is only known when the nodes could be read.

Here the nodes are put together into a ``PullerStatus``; what one node's pods say per image
is :mod:`imagepuller.nodepods`'s, which nodes the pods are meant for
:mod:`imagepuller.nodeselection`'s, and the text ``imagepuller status`` prints
:mod:`imagepuller.cachetable`'s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imagepuller import objects
from imagepuller.daemonset import REFRESH_ANNOTATION
from imagepuller.failures import Failure
from imagepuller.imageparsers import INIT_CONTAINER_NAME, CachedImage
from imagepuller.nodepods import (
    FAILED,
    HELD,
    PULLING,
    ImageStatus,
    image_states,
    live_pods,
)
from imagepuller.nodeselection import required_affinity, why_not_selected
from imagepuller.objects import controller_reference

NOT_SCHEDULED = "not-scheduled"
# The table's order: what needs someone's attention first.
STATES = (FAILED, PULLING, NOT_SCHEDULED, HELD)

# The table keeps one line per row: a kubelet message can be a paragraph.
DETAIL_WIDTH = 100


# An image as the template has it: the container's name and the reference.
Image = CachedImage


@dataclass(frozen=True)
class NodeStatus:
    node: str
    selected: bool
    state: str
    holds: int
    of: int
    why: str | None  # why the pods are not meant for this node (None: they are)
    images: Mapping[str, ImageStatus]  # by container name
    detail: str = ""  # one line for the table: what is wrong or still going on

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "selected": self.selected,
            "state": self.state,
            "holds": self.holds,
            "of": self.of,
            "why": self.why,
            "images": {
                name: {"state": s.state, "reason": s.reason, "message": s.message}
                for name, s in self.images.items()
            },
        }


@dataclass(frozen=True)
class PullerStatus:
    namespace: str
    name: str
    images: tuple[Image, ...]
    desired: int
    holding: int
    last_refresh: str | None
    nodes: tuple[NodeStatus, ...]
    failures: tuple[Failure, ...]
    # False when the nodes could not be read: a selected node without a pod is then not shown.
    nodes_without_pods_shown: bool = True
    notes: tuple[str, ...] = field(default=())

    @property
    def ready(self) -> bool:
        # No desired node is not ready: nothing is cached anywhere, and a rollout gated on this
        # must not pass because a node selector matches no node.
        return self.desired > 0 and self.holding == self.desired

    @property
    def counts(self) -> dict[str, int]:
        """Nodes shown in each state; keys snake_case (``not_scheduled``) like every key."""
        counts = dict.fromkeys(STATES, 0)
        for node in self.nodes:
            counts[node.state] += 1
        return {state.replace("-", "_"): counts[state] for state in STATES}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with stable snake_case keys (what `status -o json` prints per puller)."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "ready": self.ready,
            "desired": self.desired,
            "holding": self.holding,
            "last_refresh": self.last_refresh,
            "images": [{"name": i.name, "image": i.image} for i in self.images],
            "counts": self.counts,
            "nodes_without_pods_shown": self.nodes_without_pods_shown,
            "notes": list(self.notes),
            "failures": [
                {
                    "node": f.node,
                    "image": f.image,
                    "container": f.container,
                    "reason": f.reason,
                    "message": f.message,
                    "still_held": f.still_held,
                }
                for f in self.failures
            ],
            "nodes": [node.to_dict() for node in self.nodes],
        }


def summarize(
    daemonset: dict[str, Any], pods: list[dict[str, Any]], nodes: list[dict[str, Any]] | None
) -> PullerStatus:
    """The cache of one puller: ``pods`` are the DaemonSet's (by its selector), ``nodes``
    every node, or None when they could not be read (then only nodes with a pod are known)."""
    pod_spec = ((daemonset.get("spec") or {}).get("template") or {}).get("spec") or {}
    images = template_images(pod_spec)
    by_node = _pods_by_node(_owned_by(pods, objects.uid(daemonset)))

    # Which nodes to show, and for each why the pods are not meant for it (None: they are).
    if nodes is None:
        whys: dict[str, str | None] = dict.fromkeys(by_node)
    else:
        whys = {objects.name(node): why_not_selected(pod_spec, node) for node in nodes}
        for name in by_node:
            whys.setdefault(name, "node no longer exists")
    examined = [
        _node_status(name, whys[name], images, by_node.get(name, []))
        for name in sorted(whys, key=natural_key)
    ]
    statuses = tuple(node for node, _ in examined)
    failures = tuple(failure for _, node_failures in examined for failure in node_failures)
    reported = int(objects.daemonset_status(daemonset).get("desiredNumberScheduled") or 0)
    desired = reported if nodes is None else sum(1 for n in statuses if n.selected)
    holding = sum(1 for n in statuses if n.selected and n.state == HELD)
    return PullerStatus(
        namespace=objects.namespace(daemonset),
        name=objects.name(daemonset),
        images=images,
        desired=desired,
        holding=holding,
        last_refresh=objects.annotation(daemonset, REFRESH_ANNOTATION),
        nodes=statuses,
        failures=failures,
        nodes_without_pods_shown=nodes is not None,
        notes=tuple(_notes(nodes, statuses, desired, reported, daemonset)),
    )


def template_images(pod_spec: Mapping[str, Any]) -> tuple[Image, ...]:
    """The images the pods hold: their containers, in order, without the init container."""
    return tuple(
        Image(c["name"], c.get("image", ""))
        for c in pod_spec.get("containers") or []
        if c["name"] != INIT_CONTAINER_NAME
    )


def _notes(
    nodes: list[dict[str, Any]] | None,
    statuses: Sequence[NodeStatus],
    desired: int,
    reported: int,
    daemonset: dict[str, Any],
) -> list[str]:
    if nodes is None:
        without_pod = max(0, desired - sum(1 for n in statuses if n.selected))
        note = "nodes could not be read (no permission to list nodes): only nodes running a pod"
        note += " are shown, and why a node has none is not known"
        if without_pod:
            note += f"; {without_pod} of the {desired} desired nodes have no pod yet"
        return [note]
    status = objects.daemonset_status(daemonset)
    if "desiredNumberScheduled" in status and reported != desired:
        # Our reading of selector, affinity and taints against the DaemonSet controller's: a
        # node that just joined or changed is the usual cause.
        return [
            f"the DaemonSet controller counts {reported} desired nodes, {desired} by the "
            "nodes read now (a node may have just joined, left or changed)"
        ]
    return []


def _owned_by(pods: Iterable[dict[str, Any]], uid: str | None) -> list[dict[str, Any]]:
    """The pods whose controller is the DaemonSet ``uid``: a pod that matches the selector but
    that another controller owns, or none (made by hand, orphaned), holds nothing for it.
    All are kept only when the DaemonSet's uid is unknown (never so in what the API returns)."""
    return [pod for pod in pods if not uid or (controller_reference(pod) or {}).get("uid") == uid]


def _pods_by_node(pods: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_node: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        node = pod_node(pod)
        if node:
            by_node.setdefault(node, []).append(pod)
    return by_node


def pod_node(pod: Mapping[str, Any]) -> str:
    """The node of a DaemonSet pod: where it was scheduled, or, before that, the node its
    required affinity names (the DaemonSet controller pins each pod to one node that way)."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = required_affinity(spec) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for requirement in term.get("matchFields") or []:
            values = requirement.get("values") or []
            if requirement.get("key") == "metadata.name" and len(values) == 1:
                return str(values[0])
    return ""


def _node_status(
    name: str, why: str | None, images: Sequence[Image], pods: list[dict[str, Any]]
) -> tuple[NodeStatus, list[Failure]]:
    """The node's status, and its failing containers."""
    live = live_pods(pods)
    if not live:
        if why is not None:
            states = {i.name: ImageStatus(NOT_SCHEDULED) for i in images}
            node = NodeStatus(name, False, NOT_SCHEDULED, 0, len(images), why, states, why)
            return node, []
        # Meant for this node, but the DaemonSet controller has not created its pod yet (or
        # the old one is being deleted, as a recreate refresh does).
        states = {i.name: ImageStatus(PULLING, "", "no pod yet") for i in images}
        return NodeStatus(name, True, PULLING, 0, len(images), None, states, "no pod yet"), []
    states, failures = image_states(name, images, live)
    holds = sum(1 for s in states.values() if s.state == HELD)
    if holds == len(images):
        state = HELD
        detail = ("refresh failing: " + _failure_detail(failures)) if failures else ""
    elif failures:
        state, detail = FAILED, _failure_detail(failures)
    else:
        state = PULLING
        detail = _list_detail(
            f"{n}: {s.reason or 'waiting'}" for n, s in states.items() if s.state != HELD
        )
    if why is not None:  # a pod left on a node no longer meant for it
        detail = "; ".join(part for part in (detail, f"not selected: {why}") if part)
    node = NodeStatus(name, why is None, state, holds, len(images), why, states, detail)
    return node, failures


def _failure_detail(failures: Sequence[Failure]) -> str:
    return _list_detail(
        ": ".join(part for part in (f.container, f.reason, f.message) if part) for f in failures
    )


def _list_detail(items: Iterable[str]) -> str:
    """The first item, and how many more: rows group by it, so it stays short and stable."""
    listed = list(items)
    if not listed:
        return ""
    more = f" (+{len(listed) - 1} more)" if len(listed) > 1 else ""
    return shorten(listed[0], DETAIL_WIDTH - len(more)) + more


def shorten(text: str, width: int) -> str:
    """``text`` on one line, at most ``width`` characters (ending in '...' when cut)."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(0, width - 3)].rstrip() + "..."


def natural_key(name: str) -> list[Any]:
    """Sort key putting node-2 before node-10."""
    # re.split with a group alternates text and digits: odd places are always digits.
    parts = re.split(r"([0-9]+)", name)
    return [int(part) if place % 2 else part for place, part in enumerate(parts)]
