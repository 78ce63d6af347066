"""A Lease as leader election reads and writes it: the bodies, and when its holder is gone.

Pure but for one monotonic clock: the bodies written to create, renew, take over or release a
Lease are functions of the Lease read and the time, and :class:`RecordWatch` judges expiry
from when this process first saw the Lease's record as it is, on that clock.
:class:`imagepuller.lease.LeaderElector` runs the loop that reads and writes them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from imagepuller import objects

# (holderIdentity, renewTime, resourceVersion): what tells us the holder is alive.
Record = tuple[str, str, str]


def record_of(lease: dict[str, Any]) -> Record:
    spec = lease.get("spec") or {}
    return (
        spec.get("holderIdentity") or "",
        str(spec.get("renewTime") or ""),
        objects.resource_version(lease) or "",
    )


class RecordWatch:
    """The last Lease record seen and when (``clock``, monotonic) it was first seen as it is."""

    def __init__(self, clock: Callable[[], float], lease_duration: float):
        self._clock = clock
        # Used when the Lease states no duration of its own.
        self._lease_duration = lease_duration
        self.record: Record | None = None
        self.seen_at = 0.0

    @property
    def holder(self) -> str:
        """The holder of the last record seen ("" when none was, or it was released)."""
        return self.record[0] if self.record else ""

    def observe(self, lease: dict[str, Any]) -> float:
        """Note the Lease's record; returns when we first saw it as it is now."""
        record = record_of(lease)
        if record != self.record:
            self.record = record
            self.seen_at = self._clock()
        return self.seen_at

    def expired(self, spec: dict[str, Any], observed_at: float) -> bool:
        # Expiry is judged on OUR monotonic clock, from when WE first saw the holder's current
        # record, never from the renewTime it wrote: that is a reading of the holder's wall
        # clock, and machines' clocks disagree (a holder whose clock runs an hour slow would
        # look expired while renewing every two seconds; one running fast would never look
        # expired). A record that has not changed for a whole lease duration of our own time
        # means its holder stopped renewing, whatever the clocks say. The cost: a candidate
        # that has just started waits one full lease duration before it can take over.
        duration = spec.get("leaseDurationSeconds")
        seconds = float(duration) if isinstance(duration, int | float) and duration > 0 else None
        return self._clock() - observed_at >= (seconds or self._lease_duration)


def lease_seconds(lease_duration: float) -> int:
    """``leaseDurationSeconds`` is whole seconds: rounded up, so others never wait less."""
    return max(1, math.ceil(lease_duration))


def new_lease(name: str, namespace: str, identity: str, now: str, seconds: int) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "holderIdentity": identity,
            "leaseDurationSeconds": seconds,
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": 0,
        },
    }


def renewed(lease: dict[str, Any], now: str, seconds: int) -> dict[str, Any]:
    """The Lease we hold, renewed ``now``."""
    body = copy.deepcopy(lease)
    spec = body.setdefault("spec", {})
    spec["renewTime"] = now
    spec["leaseDurationSeconds"] = seconds
    return body


def taken_over(lease: dict[str, Any], identity: str, now: str, seconds: int) -> dict[str, Any]:
    """The Lease, released or expired, made ours ``now``: one more transition."""
    body = copy.deepcopy(lease)
    spec = body.setdefault("spec", {})
    spec["holderIdentity"] = identity
    spec["acquireTime"] = now
    spec["renewTime"] = now
    spec["leaseTransitions"] = transitions(lease) + 1
    spec["leaseDurationSeconds"] = seconds
    return body


def released(lease: dict[str, Any], now: str) -> dict[str, Any]:
    """The Lease given up: no holder, and a duration of one second for any late reader."""
    body = copy.deepcopy(lease)
    spec = body.setdefault("spec", {})
    spec["holderIdentity"] = ""
    spec["leaseDurationSeconds"] = 1
    spec["renewTime"] = now
    return body


def transitions(lease: dict[str, Any]) -> int:
    value = (lease.get("spec") or {}).get("leaseTransitions")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
