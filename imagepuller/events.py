"""Kubernetes Events the puller records, next to the object an administrator looks at.

`kubectl describe` and `oc get events` show them; a failure to record one is logged, never
raised: an Event is a courtesy, not part of the work.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import structlog

from imagepuller.kube import Kube, KubeError
from imagepuller.reconciler import format_time

log = structlog.get_logger("imagepuller.events")

EVENT_SOURCE = "imagepuller"
# The API caps an Event's message at 1 KiB.
MESSAGE_MAX = 1024


def involved(obj: Mapping[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    """The `involvedObject` of an Event about ``obj`` (an object as the API returned it)."""
    meta = obj["metadata"]
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": meta["name"],
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }


def record_event(
    kube: Kube,
    about: dict[str, Any],
    *,
    warning: bool,
    reason: str,
    message: str,
    identity: str = "",
) -> None:
    now = format_time(time.time())
    namespace = about["namespace"]
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{about['name']}.", "namespace": namespace},
        "involvedObject": about,
        "type": "Warning" if warning else "Normal",
        "reason": reason,
        "message": message if len(message) <= MESSAGE_MAX else message[:1000] + " ...",
        "source": {"component": EVENT_SOURCE},
        "reportingComponent": EVENT_SOURCE,
        "reportingInstance": identity[:128] or EVENT_SOURCE,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        kube.create_event(namespace, body)
    except KubeError as err:
        log.warning("event_not_recorded", reason=reason, error=str(err))
