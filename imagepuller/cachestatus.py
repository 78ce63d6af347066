"""Which node holds which image: one puller's cache, per node and per image, and its rendering.

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
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imagepuller.apitime import parse_time
from imagepuller.daemonset import REFRESH_ANNOTATION
from imagepuller.imageparsers import INIT_CONTAINER_NAME, CachedImage
from imagepuller.ownership import controller_reference
from imagepuller.pods import container_failure

HELD = "held"
PULLING = "pulling"
FAILED = "failed"
NOT_SCHEDULED = "not-scheduled"
# The table's order: what needs someone's attention first.
STATES = (FAILED, PULLING, NOT_SCHEDULED, HELD)

# The DaemonSet controller adds tolerations for these to every pod it creates (not-ready,
# unreachable, disk-pressure, memory-pressure, pid-pressure, unschedulable, ...).
_DAEMON_TOLERATED_PREFIX = "node.kubernetes.io/"
_BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
# The table keeps one line per row: a kubelet message can be a paragraph.
DETAIL_WIDTH = 100
NODES_WIDTH = 32


# An image as the template has it: the container's name and the reference.
Image = CachedImage


@dataclass(frozen=True)
class ImageStatus:
    state: str
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class Failure:
    node: str
    image: str  # the reference
    container: str  # empty when the whole pod failed (unschedulable, evicted)
    reason: str
    message: str
    # An older pod on the node still holds the image; the newest one (a refresh's) fails.
    still_held: bool = False


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


# --- the model -----------------------------------------------------------------------------


def summarize(
    daemonset: dict[str, Any], pods: list[dict[str, Any]], nodes: list[dict[str, Any]] | None
) -> PullerStatus:
    """The cache of one puller: ``pods`` are the DaemonSet's (by its selector), ``nodes``
    every node, or None when they could not be read (then only nodes with a pod are known)."""
    metadata = daemonset["metadata"]
    pod_spec = ((daemonset.get("spec") or {}).get("template") or {}).get("spec") or {}
    images = template_images(pod_spec)
    by_node = _pods_by_node(_owned_by(pods, metadata.get("uid")))

    # Which nodes to show, and for each why the pods are not meant for it (None: they are).
    if nodes is None:
        whys: dict[str, str | None] = dict.fromkeys(by_node)
    else:
        whys = {node["metadata"]["name"]: why_not_selected(pod_spec, node) for node in nodes}
        for name in by_node:
            whys.setdefault(name, "node no longer exists")
    examined = [
        _node_status(name, whys[name], images, by_node.get(name, []))
        for name in sorted(whys, key=natural_key)
    ]
    statuses = tuple(node for node, _ in examined)
    failures = tuple(failure for _, node_failures in examined for failure in node_failures)
    reported = int((daemonset.get("status") or {}).get("desiredNumberScheduled") or 0)
    desired = reported if nodes is None else sum(1 for n in statuses if n.selected)
    holding = sum(1 for n in statuses if n.selected and n.state == HELD)
    return PullerStatus(
        namespace=metadata.get("namespace") or "",
        name=metadata["name"],
        images=images,
        desired=desired,
        holding=holding,
        last_refresh=(metadata.get("annotations") or {}).get(REFRESH_ANNOTATION),
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
    status = daemonset.get("status") or {}
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
    required = _required_affinity(spec) or {}
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
    live = _live(pods)
    if not live:
        if why is not None:
            states = {i.name: ImageStatus(NOT_SCHEDULED) for i in images}
            node = NodeStatus(name, False, NOT_SCHEDULED, 0, len(images), why, states, why)
            return node, []
        # Meant for this node, but the DaemonSet controller has not created its pod yet (or
        # the old one is being deleted, as a recreate refresh does).
        states = {i.name: ImageStatus(PULLING, "", "no pod yet") for i in images}
        return NodeStatus(name, True, PULLING, 0, len(images), None, states, "no pod yet"), []
    states, failing = image_states(images, live)
    held = {n for n, s in states.items() if s.state == HELD}
    # A problem of the whole pod (no container) is "still held" when it blocks nothing else.
    failures = [
        Failure(name, *problem, still_held=(problem[1] or "") in held or len(held) == len(images))
        for problem in failing
    ]
    holds = len(held)
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


# (image reference, container, reason, message) of one failing container; container and
# image are empty when the whole pod failed.
_Problem = tuple[str, str, str, str]


def image_states(
    images: Sequence[Image], live: list[dict[str, Any]]
) -> tuple[dict[str, ImageStatus], list[_Problem]]:
    """Per image (by container name), what the live pods of one node (at least one) say about
    it; and the failing containers: the init container or the pod itself when they block every
    image still missing, else each failing image's container."""
    held = {name for pod in live for name in _ready_containers(pod, images)}
    newest = max(live, key=_created)
    blocked = _blocking_problem(newest)
    states: dict[str, ImageStatus] = {}
    failing: list[_Problem] = []
    for image in images:
        if image.name in held:
            # Held by this or an older pod; the newest may still fail to pull it (a refresh).
            state = _container_state(newest, image.name)
            if blocked is not None:
                if blocked not in failing:
                    failing.append(blocked)
                states[image.name] = ImageStatus(HELD, blocked[2], blocked[3])
            elif state.state == FAILED:
                failing.append((image.image, image.name, state.reason, state.message))
                states[image.name] = ImageStatus(HELD, state.reason, state.message)
            else:
                states[image.name] = ImageStatus(HELD)
        elif blocked is not None:
            # The whole pod cannot start (unschedulable, evicted, its init container failing):
            # every image still missing fails for that one reason, reported once.
            _image, container, reason, message = blocked
            where = f"init container {container}: " if container else ""
            states[image.name] = ImageStatus(FAILED, reason, where + message)
            failing[:] = [blocked]
        else:
            states[image.name] = state = _container_state(newest, image.name)
            if state.state == FAILED:
                failing.append((image.image, image.name, state.reason, state.message))
    return states, failing


def _live(pods: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    # A pod being deleted is going: it no longer counts as holding anything.
    return [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]


def _created(pod: Mapping[str, Any]) -> tuple[float, str]:
    metadata = pod["metadata"]
    return parse_time(metadata.get("creationTimestamp")) or 0.0, metadata.get("name") or ""


def _ready_containers(pod: Mapping[str, Any], images: Sequence[Image]) -> set[str]:
    """The images ``pod`` holds: containers ready and running the image wanted now (a pod from
    before an image changed runs the old one under the same container name)."""
    specs = {c["name"]: c.get("image") for c in (pod.get("spec") or {}).get("containers") or []}
    ready = {
        s["name"]
        for s in (pod.get("status") or {}).get("containerStatuses") or []
        if s.get("ready") is True
    }
    return {i.name for i in images if i.name in ready and specs.get(i.name) == i.image}


def _blocking_problem(pod: Mapping[str, Any]) -> _Problem | None:
    """(image, container, reason, message) of what keeps the whole pod from starting, if
    anything: failed (evicted), unschedulable, or an init container failing. Container and
    image are empty when it is the pod itself."""
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        return "", "", status.get("reason") or "Failed", status.get("message") or ""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return (
                "",
                "",
                condition.get("reason") or "Unschedulable",
                condition.get("message") or "",
            )
    init_images = {
        c["name"]: c.get("image", "") for c in (pod.get("spec") or {}).get("initContainers") or []
    }
    for container in status.get("initContainerStatuses") or []:
        problem = container_failure(container)
        if problem is not None:
            name = container["name"]
            return init_images.get(name) or container.get("image", ""), name, *problem
    return None


def _container_state(pod: Mapping[str, Any], name: str) -> ImageStatus:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    status = next((s for s in statuses if s.get("name") == name), None)
    if status is None:  # the kubelet has not reported on it yet
        return ImageStatus(PULLING)
    problem = container_failure(status)
    if problem is not None:
        return ImageStatus(FAILED, *problem)
    state = status.get("state") or {}
    waiting = state.get("waiting") or {}
    if waiting:
        return ImageStatus(PULLING, waiting.get("reason") or "", waiting.get("message") or "")
    if "running" in state:
        return ImageStatus(PULLING, "NotReady", "running, not ready yet")
    return ImageStatus(PULLING)


# --- which nodes the pods are meant for ------------------------------------------------------


def why_not_selected(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> str | None:
    """Why the DaemonSet controller would not run a pod of ``pod_spec`` on ``node``: its node
    selector, its required node affinity or a taint it does not tolerate; None if it would."""
    metadata = node.get("metadata") or {}
    labels = metadata.get("labels") or {}
    reasons = [
        f"selector {key}={value}"
        for key, value in (pod_spec.get("nodeSelector") or {}).items()
        if labels.get(key) != value
    ]
    required = _required_affinity(pod_spec)
    if required is not None:
        fields = {"metadata.name": metadata.get("name") or ""}
        terms = required.get("nodeSelectorTerms") or []
        # The terms are ORed; an empty list of terms, or an empty term, matches no node.
        if not any(_term_matches(term, labels, fields) for term in terms):
            reasons.append("affinity: no required node affinity term matches")
    tolerations = pod_spec.get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in _BLOCKING_EFFECTS and not _tolerated(taint, tolerations):
            value = f"={taint['value']}" if taint.get("value") else ""
            reasons.append(f"taint {taint.get('key', '')}{value}:{taint['effect']}")
    return "; ".join(reasons) or None


def _required_affinity(pod_spec: Mapping[str, Any]) -> dict[str, Any] | None:
    node_affinity = (pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    return required if isinstance(required, dict) else None


def _term_matches(
    term: Mapping[str, Any], labels: Mapping[str, str], fields: Mapping[str, str]
) -> bool:
    expressions = term.get("matchExpressions") or []
    match_fields = term.get("matchFields") or []
    if not expressions and not match_fields:
        return False
    return all(_requirement_matches(r, labels) for r in expressions) and all(
        _requirement_matches(r, fields) for r in match_fields
    )


def _requirement_matches(requirement: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = requirement.get("key") or "", requirement.get("operator")
    values = [str(v) for v in requirement.get("values") or []]
    present, value = key in labels, labels.get(key)
    if operator == "In":
        return present and value in values
    if operator == "NotIn":
        return not present or value not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        have, bound = _api_integer(str(value)), _api_integer(values[0])
        if have is None or bound is None:
            return False  # the scheduler's reading: not a number, so no match
        return have > bound if operator == "Gt" else have < bound
    return False  # an operator the API would have refused


_INT64 = range(-(2**63), 2**63)


def _api_integer(text: str) -> int | None:
    """``text`` as Go's strconv.ParseInt(text, 10, 64) reads it, as the scheduler does for Gt
    and Lt, or None. Python's int() would take "1_0" (10), " 8", or "８" and "٨" (non-ASCII
    digits), and any size: none of them is a number there."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    number = int(text)
    return number if number in _INT64 else None


def _tolerated(taint: Mapping[str, Any], tolerations: Iterable[Mapping[str, Any]]) -> bool:
    key = taint.get("key") or ""
    if key.startswith(_DAEMON_TOLERATED_PREFIX):
        return True
    for toleration in tolerations:
        effect = toleration.get("effect") or ""
        if effect and effect != taint.get("effect"):
            continue
        wanted = toleration.get("key") or ""
        if (toleration.get("operator") or "Equal") == "Exists":
            if not wanted or wanted == key:  # no key: tolerates every taint
                return True
        elif wanted == key and (toleration.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


# --- rendering ---------------------------------------------------------------------------------


def render_table(status: PullerStatus, *, max_rows: int = 50, now: float | None = None) -> str:
    """A summary line, then one row per group of nodes alike (same state, images held and
    detail), failing first; at most ``max_rows`` rows, saying how many more were left off."""
    lines = [summary_line(status, now=now)]
    rows = _rows(status.nodes)
    shown = rows[: max(1, max_rows)]
    if shown:
        table = [("NODES", "IMAGES", "STATE", "DETAIL")]
        table += [
            (_node_list(names), f"{holds}/{of}", state, detail)
            for state, holds, of, detail, names in shown
        ]
        widths = [max(len(row[column]) for row in table) for column in range(3)]
        for row in table:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            lines.append("  ".join([*cells, row[3]]).rstrip())
    else:
        lines.append("(no node to show)")
    left_off = rows[len(shown) :]
    if left_off:
        nodes = sum(len(row[4]) for row in left_off)
        lines.append(
            f"... {len(left_off)} more rows ({nodes} nodes) left off; -o json lists every node"
        )
    lines.extend(f"note: {note}" for note in status.notes)
    return "\n".join(lines) + "\n"


def render_many(
    statuses: Sequence[PullerStatus], *, max_rows: int = 50, now: float | None = None
) -> str:
    """Every puller's table, one block each, and a last line counting the ready ones."""
    if not statuses:
        return "no puller found\n"
    blocks = [render_table(status, max_rows=max_rows, now=now) for status in statuses]
    ready = sum(1 for status in statuses if status.ready)
    total = len(statuses)
    footer = f"{ready} of {_plural(total, 'puller')} ready\n"
    return "\n".join([*blocks, footer])


def summary_line(status: PullerStatus, *, now: float | None = None) -> str:
    """'ns/name: 3 of 4 selected nodes hold all 2 images; 1 failing; ...; last refresh ...'."""
    counts = status.counts
    nodes = "node holds" if status.desired == 1 else "nodes hold"
    images = _plural(len(status.images), "image")
    parts = [
        f"{status.namespace}/{status.name}: {status.holding} of {status.desired} selected "
        f"{nodes} all {images}"
    ]
    if counts["failed"]:
        parts.append(f"{counts['failed']} failing")
    if counts["pulling"]:
        parts.append(f"{counts['pulling']} pulling")
    if counts["not_scheduled"]:
        parts.append(f"{counts['not_scheduled']} not scheduled")
    parts.append(_refresh(status.last_refresh, now))
    return "; ".join(parts)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _refresh(last_refresh: str | None, now: float | None) -> str:
    if not last_refresh:
        return "no refresh recorded"
    moment = parse_time(last_refresh)
    if moment is None:
        return f"last refresh {last_refresh}"
    return f"last refresh {last_refresh} ({age(moment, time.time() if now is None else now)})"


def age(moment: float, now: float) -> str:
    """How long ago, in its largest unit: '45s ago', '12m ago', '3h ago', '2d ago'."""
    seconds = int(now - moment)
    if seconds < 0:
        return "in the future: check the clocks"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


_Row = tuple[str, int, int, str, list[str]]  # state, holds, of, detail, node names


def _rows(nodes: Iterable[NodeStatus]) -> list[_Row]:
    """Nodes alike grouped into one row; failing rows first, then pulling, not scheduled and
    held, the largest group of each first."""
    groups: dict[tuple[str, int, int, str], list[str]] = {}
    for node in nodes:
        key = (node.state, node.holds, node.of, shorten(node.detail, DETAIL_WIDTH))
        groups.setdefault(key, []).append(node.node)
    rows = [(*key, sorted(names, key=natural_key)) for key, names in groups.items()]
    return sorted(rows, key=lambda r: (STATES.index(r[0]), -len(r[4]), natural_key(r[4][0])))


def _node_list(names: Sequence[str]) -> str:
    """'node-0, node-1, ... (+997)': as many names as fit NODES_WIDTH, at least one."""
    shown = [names[0]]
    for name in names[1:]:
        if len(", ".join([*shown, name])) > NODES_WIDTH:
            break
        shown.append(name)
    rest = len(names) - len(shown)
    return ", ".join(shown) + (f", ... (+{rest})" if rest else "")


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
