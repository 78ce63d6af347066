"""What the pods of one node say about each image: held, pulling or failing, and why.

Pure: a node's pods (plain dicts, as the API returns them) and the images wanted go in. An
image is held when a pod not being deleted has its container ready, running that image; else
the newest pod says why not: a failing container, something that keeps the whole pod from
starting (evicted, unschedulable, its init container failing), or progress.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from imagepuller import objects
from imagepuller.failures import Failure
from imagepuller.imageparsers import CachedImage
from imagepuller.pods import container_failure

HELD = "held"
PULLING = "pulling"
FAILED = "failed"


@dataclass(frozen=True)
class ImageStatus:
    state: str
    reason: str = ""
    message: str = ""


def image_states(
    node: str, images: Sequence[CachedImage], live: list[dict[str, Any]]
) -> tuple[dict[str, ImageStatus], list[Failure]]:
    """Per image (by container name), what the live pods of ``node`` (at least one) say about
    it; and the failing containers: the init container or the pod itself when they block every
    image still missing, else each failing image's container."""
    held = {name for pod in live for name in _ready_containers(pod, images)}
    newest = max(live, key=_created)
    blocked = _blocking_problem(node, newest)
    states: dict[str, ImageStatus] = {}
    failing: list[Failure] = []
    for image in images:
        if image.name in held:
            # Held by this or an older pod; the newest may still fail to pull it (a refresh).
            state = _container_state(newest, image.name)
            if blocked is not None:
                if blocked not in failing:
                    failing.append(blocked)
                states[image.name] = ImageStatus(HELD, blocked.reason, blocked.message)
            elif state.state == FAILED:
                failing.append(Failure(node, image.image, image.name, state.reason, state.message))
                states[image.name] = ImageStatus(HELD, state.reason, state.message)
            else:
                states[image.name] = ImageStatus(HELD)
        elif blocked is not None:
            # The whole pod cannot start (unschedulable, evicted, its init container failing):
            # every image still missing fails for that one reason, reported once.
            where = f"init container {blocked.container}: " if blocked.container else ""
            states[image.name] = ImageStatus(FAILED, blocked.reason, where + blocked.message)
            failing[:] = [blocked]
        else:
            states[image.name] = state = _container_state(newest, image.name)
            if state.state == FAILED:
                failing.append(Failure(node, image.image, image.name, state.reason, state.message))
    # A failure is "still held" when an older pod holds its image, or, for one of the whole
    # pod (no container), when every image is held and it blocks nothing.
    every_image_held = len(held) == len(images)
    return states, [
        replace(failure, still_held=failure.container in held or every_image_held)
        for failure in failing
    ]


def live_pods(pods: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    # A pod being deleted is going: it no longer counts as holding anything.
    return [pod for pod in pods if not objects.being_deleted(pod)]


def _created(pod: Mapping[str, Any]) -> tuple[float, str]:
    return objects.created_at(pod) or 0.0, objects.name(pod)


def _ready_containers(pod: Mapping[str, Any], images: Sequence[CachedImage]) -> set[str]:
    """The images ``pod`` holds: containers ready and running the image wanted now (a pod from
    before an image changed runs the old one under the same container name)."""
    specs = {c["name"]: c.get("image") for c in (pod.get("spec") or {}).get("containers") or []}
    ready = {
        s["name"]
        for s in (pod.get("status") or {}).get("containerStatuses") or []
        if s.get("ready") is True
    }
    return {i.name for i in images if i.name in ready and specs.get(i.name) == i.image}


def _blocking_problem(node: str, pod: Mapping[str, Any]) -> Failure | None:
    """What keeps the whole pod on ``node`` from starting, if anything: failed (evicted),
    unschedulable, or an init container failing. Container and image are empty when it is the
    pod itself."""
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        return Failure(node, "", "", status.get("reason") or "Failed", status.get("message") or "")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = condition.get("reason") or "Unschedulable"
            return Failure(node, "", "", reason, condition.get("message") or "")
    init_images = {
        c["name"]: c.get("image", "") for c in (pod.get("spec") or {}).get("initContainers") or []
    }
    for container in status.get("initContainerStatuses") or []:
        problem = container_failure(container)
        if problem is not None:
            name = container["name"]
            image = init_images.get(name) or container.get("image", "")
            return Failure(node, image, name, *problem)
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
