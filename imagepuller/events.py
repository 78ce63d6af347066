"""Kubernetes Events (events.k8s.io/v1) the puller records, where an administrator looks:
`kubectl get events`, `kubectl describe deployment` (or the object an Event is about).

A repeat is not a new Event: the same report about the same object (same type, reason and
note) updates the first one's ``series`` (count, last seen), as client-go's recorder does, so
an hourly "ready on 5/5 nodes" or a failure that keeps failing is one line with a count.
When the API server has dropped the Event (its time to live, one hour by default), the next
repeat creates a new one.

Recording never raises: an Event is a courtesy, not part of the work.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog

from imagepuller import objects
from imagepuller.apierrors import KubeError, NotFound
from imagepuller.apitime import micro_time
from imagepuller.kube import EVENTS_V1, Kube

log = structlog.get_logger("imagepuller.events")

# events.k8s.io/v1 requires a qualified name for the controller, and an instance per process.
REPORTING_CONTROLLER = "imagepuller.io/controller"
# The API refuses a note over 1 KiB, counted in UTF-8 bytes (Go's len), not characters: a
# note of node names, messages or image references in other scripts reaches it sooner.
NOTE_MAX_BYTES = 1024
NOTE_CUT = " ..."
# How many distinct reports are remembered for aggregation: bounded memory whatever happens.
SERIES_REMEMBERED = 256


def involved(obj: Mapping[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    """An Event's reference (``regarding``/``related``) to ``obj``, as the API returned it."""
    meta = objects.metadata(obj)
    reference = {
        "apiVersion": api_version,
        "kind": kind,
        "name": objects.name(obj),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
    }
    return {key: value for key, value in reference.items() if value}


def _note(text: str) -> str:
    """``text`` within the API's limit: cut where needed, ending in " ..." then."""
    # A lone surrogate (a file name decoded by Python) cannot be sent as UTF-8: "?" instead.
    encoded = text.encode(errors="replace")
    if len(encoded) <= NOTE_MAX_BYTES:
        return encoded.decode()
    room = NOTE_MAX_BYTES - len(NOTE_CUT.encode())
    # Decoding with "ignore" drops the partial character a byte cut may leave at the end.
    return encoded[:room].decode(errors="ignore") + NOTE_CUT


class EventRecorder:
    def __init__(self, kube: Kube, identity: str = "", wall: Callable[[], float] = time.time):
        self.kube = kube
        self.instance = (identity or "imagepuller")[:128]
        self.wall = wall
        self._lock = threading.Lock()
        # (namespace, regarding uid, type, reason, note) -> (Event name, count so far)
        self._series: OrderedDict[tuple[str, ...], tuple[str, int]] = OrderedDict()

    def record(
        self,
        regarding: dict[str, Any],
        *,
        warning: bool,
        reason: str,
        action: str,
        note: str,
        related: dict[str, Any] | None = None,
    ) -> None:
        namespace = regarding.get("namespace") or ""
        kind = "Warning" if warning else "Normal"
        note = _note(note)
        key = (namespace, str(regarding.get("uid") or regarding["name"]), kind, reason, note)
        now = micro_time(self.wall())
        with self._lock:  # the ConfigMap's watch thread records too
            try:
                if key in self._series and self._repeat(key, namespace, now):
                    return
                body: dict[str, Any] = {
                    "apiVersion": "events.k8s.io/v1",
                    "kind": "Event",
                    # Named as client-go names them (events.k8s.io refuses a generateName
                    # ending in "."): the object's name and the time in hex nanoseconds.
                    "metadata": {
                        "name": f"{regarding['name'][:200]}.{time.time_ns():x}",
                        "namespace": namespace,
                    },
                    "eventTime": now,
                    "reportingController": REPORTING_CONTROLLER,
                    "reportingInstance": self.instance,
                    "action": action,
                    "reason": reason,
                    "type": kind,
                    "note": note,
                    "regarding": regarding,
                }
                if related:
                    body["related"] = related
                created = self.kube.create_object(EVENTS_V1, namespace, body)
            except KubeError as err:
                log.warning("event_not_recorded", reason=reason, error=str(err))
                return
            self._series[key] = (objects.name(created), 1)
            while len(self._series) > SERIES_REMEMBERED:
                self._series.popitem(last=False)

    def _repeat(self, key: tuple[str, ...], namespace: str, now: str) -> bool:
        """Count a repeat on the Event already recorded; False when it is gone."""
        name, count = self._series[key]
        patch = {"series": {"count": count + 1, "lastObservedTime": now}}
        try:
            self.kube.merge_patch(EVENTS_V1, namespace, name, patch)
        except NotFound:
            del self._series[key]
            return False
        self._series[key] = (name, count + 1)
        self._series.move_to_end(key)
        return True


class PullerEvents:
    """Events about one puller, where its administrator looks: on its owner (the Deployment,
    or the resource: what `kubectl describe` shows), or on its DaemonSet when it runs without
    one (none yet: nothing to say it on)."""

    def __init__(
        self,
        recorder: EventRecorder,
        owner: Callable[[], dict[str, Any] | None],
        daemonset: Callable[[], dict[str, Any] | None],
    ):
        self.recorder = recorder
        self.owner = owner
        self.daemonset = daemonset

    def __call__(self, *, warning: bool, reason: str, action: str, note: str) -> None:
        owner = self.owner()
        if owner is not None:
            about = about_owner(owner)
        else:
            current = self.daemonset()
            if current is None:
                return
            about = involved(current, "apps/v1", "DaemonSet")
        self.recorder.record(about, warning=warning, reason=reason, action=action, note=note)


def about_owner(owner: dict[str, Any]) -> dict[str, Any]:
    """An Event's reference to the owner (a Deployment, or a KubernetesImagePuller)."""
    return involved(owner, owner.get("apiVersion") or "apps/v1", owner.get("kind") or "Deployment")


class PullerEvent(Protocol):
    """Records an Event about a puller, wherever its administrator looks for them."""

    def __call__(self, *, warning: bool, reason: str, action: str, note: str) -> None: ...
