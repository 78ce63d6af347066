"""Writing a resource's status, and reading a rollout's pods for it (operator mode).

- A status is sent only when it differs from the one stored, at most once a second per
  resource (a rollout on many nodes changes its counts many times a second), and never again
  while the cache has not yet seen our own last write. A status someone else wrote is
  corrected.
- While a rollout is incomplete, its pods are read at most every ``FAILURES_EVERY`` seconds:
  a pull that fails changes no DaemonSet count, so nothing else would say so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from imagepuller import objects
from imagepuller.apierrors import KubeError, NotFound
from imagepuller.cachestatus import summarize
from imagepuller.config import Config
from imagepuller.daemonset import selector_labels
from imagepuller.failures import Failure
from imagepuller.kube import PULLERS, Kube
from imagepuller.status import why_not_ready

log = structlog.get_logger("imagepuller.operator")

# A status is written at most this often per resource.
STATUS_MIN_INTERVAL = 1.0
# While a rollout is not complete, the pods are read this often for the status' failures.
FAILURES_EVERY = 5.0
# At most this many looks read pods at once. A pod list is the slowest call a look makes (200
# rollouts at once made it 3 looks in 4 of the operator's busy time, mostly waiting on the API
# server): a look that finds every reader busy goes on with its resource's last reading and
# reads again at its next look, so the other workers stay free for the quick looks, the one
# that sees a DaemonSet complete among them.
POD_READERS = 3

Key = tuple[str, str]  # a resource's (namespace, name)


@dataclass
class _Written:
    status: dict[str, Any]
    at: float
    # The resource's resourceVersion in the cache when we wrote, and the one our write made:
    # while the cache shows either, it has not seen anyone else's write since ours.
    seen: str = ""
    made: str = ""


class StatusWriter:
    def __init__(self, kube: Kube, clock: Callable[[], float]):
        self.kube = kube
        self.clock = clock
        self._written: dict[Key, _Written] = {}

    def write(self, key: Key, resource: dict[str, Any], status: dict[str, Any]) -> float | None:
        """Send the status if it says something new; None, or the seconds until it may."""
        written = self._written.get(key)
        if status == (resource.get("status") or {}):
            return None
        version = objects.resource_version(resource) or ""
        if written and written.status == status and version in (written.seen, written.made):
            return None  # ours, not in the cache yet (or normalised by the API)
        # Otherwise the stored status differs from what is so: someone else wrote it, or it was
        # never written. Either way it is corrected.
        now = self.clock()
        if written is not None and now - written.at < STATUS_MIN_INTERVAL:
            return STATUS_MIN_INTERVAL - (now - written.at)
        try:
            made = self.kube.merge_patch(
                PULLERS, key[0], key[1], {"status": status}, subresource="status"
            )
        except NotFound:
            return None  # deleted meanwhile: the next look forgets it
        except KubeError as err:
            log.warning("status_not_written", resource=f"{key[0]}/{key[1]}", error=str(err))
            return STATUS_MIN_INTERVAL
        made_version = objects.resource_version(made) or ""
        self._written[key] = _Written(status, now, version, made_version)
        return None

    def forget(self, key: Key) -> None:
        self._written.pop(key, None)

    def keys(self) -> set[Key]:
        return set(self._written)


class RolloutPods:
    """Per resource, while its rollout runs: why nodes do not hold the images yet, and how
    many nodes hold every image of the current template, from one pod list."""

    def __init__(self, kube: Kube, clock: Callable[[], float]):
        self.kube = kube
        self.clock = clock
        # (read at, failures, nodes holding every image; None: the pods could not be read)
        self._read: dict[Key, tuple[float, list[Failure], int | None]] = {}
        self.rolling: set[Key] = set()  # read during the current look: look again soon
        self._readers = threading.BoundedSemaphore(POD_READERS)

    def read(
        self, key: Key, config: Config, daemonset: dict[str, Any]
    ) -> tuple[list[Failure], int | None]:
        self.rolling.add(key)
        now = self.clock()
        cached = self._read.get(key)
        if cached is not None and now - cached[0] < FAILURES_EVERY:
            return cached[1], cached[2]
        # The first reading of a rollout always waits for a reader: without one the status
        # could say nothing of its failures at all.
        if not self._readers.acquire(blocking=cached is None):
            assert cached is not None
            return cached[1], cached[2]
        try:
            found, held = self._list(key, config, daemonset)
        finally:
            self._readers.release()
        self._read[key] = (now, found, held)
        return found, held

    def _list(
        self, key: Key, config: Config, daemonset: dict[str, Any]
    ) -> tuple[list[Failure], int | None]:
        labels = selector_labels(config)
        pods: list[dict[str, Any]] | None
        try:
            query = objects.label_selector({"matchLabels": labels})
            pods = self.kube.list_pods(key[0], query)
        except KubeError as err:
            log.warning("pod_status_unavailable", error=str(err))
            pods = None
        found = why_not_ready(self.kube, key[0], labels, daemonset, pods or [])
        held = summarize(daemonset, pods, None).holding if pods is not None else None
        return found, held

    def complete(self, key: Key) -> None:
        """Its rollout is complete: the next incomplete one reads the pods afresh."""
        self._read.pop(key, None)

    def forget(self, key: Key) -> None:
        self._read.pop(key, None)
        self.rolling.discard(key)
