"""Why a DaemonSet is not ready: per node and image, what the API says, read when asked.

The pods' container statuses give the kubelet's reasons (``pods.pull_failures``); pods that
could not even be created (a quota, an admission rule) leave no status to read, and the
DaemonSet controller says why in FailedCreate events instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from imagepuller import objects
from imagepuller.apierrors import KubeError
from imagepuller.failures import Failure
from imagepuller.kube import Kube
from imagepuller.objects import generation_observed, rollout
from imagepuller.pods import pull_failures

log = structlog.get_logger("imagepuller.status")


def why_not_ready(
    kube: Kube,
    namespace: str,
    selector: Mapping[str, str],
    daemonset: dict[str, Any],
    pods: list[dict[str, Any]] | None = None,
) -> list[Failure]:
    """One per failing container, then one per distinct reason pods were not created.
    ``pods``: the DaemonSet's pods when the caller has just listed them (else listed here)."""
    desired = rollout(daemonset)[2]
    if pods is None:
        label_selector = objects.label_selector({"matchLabels": selector})
        try:
            pods = kube.list_pods(namespace, label_selector)
        except KubeError as err:
            pods = []
            log.warning("pod_status_unavailable", error=str(err))
    failures = pull_failures(pods)
    if len(pods) < desired:
        failures.extend(creation_failures(kube, namespace, objects.stored_uid(daemonset)))
    if not failures and not generation_observed(daemonset):
        # The DaemonSet controller has not taken in this generation (a status it cannot
        # write, a template it cannot turn into pods): only its Warnings say why.
        failures.extend(controller_warnings(kube, namespace, objects.stored_uid(daemonset)))
    return failures


def controller_warnings(kube: Kube, namespace: str, uid: str) -> list[Failure]:
    """The DaemonSet's Warning events of any reason, one entry per reason and message."""
    selector = f"involvedObject.uid={uid},type=Warning"
    return _event_failures(kube, namespace, selector, pod="(none)", reason="Warning")


def creation_failures(kube: Kube, namespace: str, uid: str) -> list[Failure]:
    """The DaemonSet's FailedCreate events, one entry per message with how many times."""
    selector = f"involvedObject.uid={uid},reason=FailedCreate"
    return _event_failures(kube, namespace, selector, pod="(not created)", reason="FailedCreate")


def _event_failures(
    kube: Kube, namespace: str, field_selector: str, *, pod: str, reason: str
) -> list[Failure]:
    """The events ``field_selector`` finds, one failure per reason (``reason`` when an event
    has none) and message, counted."""
    try:
        events = kube.list_events(namespace, field_selector)
    except KubeError as err:
        log.warning("events_unavailable", error=str(err))
        return []
    seen: dict[tuple[str, str], int] = {}
    for event in events:
        key = (str(event.get("reason") or reason), str(event.get("message") or ""))
        seen[key] = seen.get(key, 0) + int(event.get("count") or 1)
    return [
        Failure(node="", pod=pod, container="", image="", reason=why, message=message, times=times)
        for (why, message), times in seen.items()
    ]


def all_held(images: int, holding: int, desired: int) -> str:
    """The Ready Event's note and the Ready condition's message."""
    return f"All {images} images held on {holding}/{desired} nodes"
