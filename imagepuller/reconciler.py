"""What to do about one puller's DaemonSet, decided from what is wanted and what is there.

``decide`` is pure: the desired DaemonSet, the one observed in the cluster and the time in,
one ``Action`` out. It never asks which event arrived or what happened before, beyond the
one fact this process must remember itself (``claimed``: it has taken the DaemonSet over, so
a later change of hands means a newer puller took it). Everything else it needs, the
schedule included, is read from the DaemonSet's annotations, so a restart continues where
the previous process stopped.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagepuller import daemonset as ds
from imagepuller import objects
from imagepuller.apitime import parse_time
from imagepuller.ownership import Ownership, Whose

ROLLING = "rolling"
RECREATE = "recreate"
# After a refusal that only a person can clear (a foreign DaemonSet in the way), look again
# this often: the name may have been freed.
RETRY_SECONDS = 30.0


class Do(enum.Enum):
    CREATE = "create"  # nothing of our name: make it
    CLAIM = "claim"  # ours but made by another process (our predecessor): take it over
    UPDATE = "update"  # what the pods should be changed: update the template, it rolls
    REFRESH = "refresh"  # the interval ended: roll every pod (re-pull mutable tags)
    DELETE = "delete"  # recreate strategy (refresh or change), or an immutable field differs
    WAIT = "wait"  # being deleted: look again once it is gone
    STAND_ASIDE = "stand_aside"  # a newer puller took the name: leave it to it
    IN_THE_WAY = "in_the_way"  # a DaemonSet of our name that is not ours: leave it alone
    # Owned by an earlier owner of our kind and name (deleted and made anew): the garbage
    # collector removes it; wait for that, touching nothing.
    WAIT_FOR_COLLECTION = "wait_for_collection"
    NOTHING = "nothing"  # as wanted: look again when the next refresh is due


@dataclass(frozen=True)
class Desired:
    """The DaemonSet this puller wants, without the volatile parts (refresh time, identity)."""

    body: dict[str, Any]
    strategy: str
    interval_seconds: float
    # A refresh does not start while the previous rollout is still going, unless that one has
    # run this long (it is stuck: a node cannot pull, and the next refresh tries again).
    ready_timeout_seconds: float = 0.0

    @property
    def name(self) -> str:
        return objects.name(self.body)

    @property
    def spec_hash(self) -> str:
        return str(objects.annotations_of(self.body)[ds.SPEC_HASH_ANNOTATION])


@dataclass(frozen=True)
class Action:
    do: Do
    why: str
    # Seconds until this puller should be looked at again even if nothing happens (None:
    # only when something changes).
    requeue_after: float | None = None
    # STAND_ASIDE: the other puller's identity; IN_THE_WAY: who owns the DaemonSet ("" when
    # nothing does). Read by the executor as a value, never parsed out of ``why``.
    other: str = ""
    # A DELETE that recreates for a refresh (rather than for a change).
    refresh: bool = False

    @property
    def refreshes(self) -> bool:
        """It rolls every pod because the interval ended (rolling, or by recreating)."""
        return self.do is Do.REFRESH or (self.do is Do.DELETE and self.refresh)


def decide(
    desired: Desired,
    observed: dict[str, Any] | None,
    now: float,
    *,
    identity: str,
    claimed: bool,
    whose: Ownership,
) -> Action:
    """The one next step for ``desired`` given ``observed`` (the DaemonSet of its name).

    ``now`` is wall-clock seconds (refresh times are kept as wall-clock times in the cluster),
    ``whose`` says whose ``observed`` is (``ownership.classify``: by its controller owner's
    uid), ``claimed`` whether this process has already taken it over.
    """
    if observed is None:
        return Action(Do.CREATE, "no DaemonSet of this name")
    if objects.being_deleted(observed):
        return Action(Do.WAIT, "being deleted")
    if whose.whose is Whose.EARLIER_OWNER:
        return Action(
            Do.WAIT_FOR_COLLECTION, "owned by a deleted owner", RETRY_SECONDS, other=whose.owner
        )
    if not whose.ours:
        why = f"owned by {whose.owner}" if whose.owner else "not made by this puller"
        return Action(Do.IN_THE_WAY, why, RETRY_SECONDS, other=whose.owner)
    keeper = objects.annotation(observed, ds.CONTROLLER_ANNOTATION)
    if keeper != identity:
        if claimed:
            return Action(Do.STAND_ASIDE, f"taken over by {keeper}", other=keeper or "")
        return Action(Do.CLAIM, f"made by {keeper or 'an earlier puller'}")
    if spec_hash_of(observed) != desired.spec_hash:
        if desired.strategy == RECREATE:
            return Action(Do.DELETE, "changed (recreate strategy)")
        if _selector(observed) != _selector(desired.body):
            return Action(Do.DELETE, "changed selector (immutable)")
        return Action(Do.UPDATE, "changed")
    last = refreshed_at(observed)
    due = last + desired.interval_seconds
    if now < due:
        return Action(Do.NOTHING, "as wanted", due - now)
    if desired.strategy == RECREATE:
        return Action(Do.DELETE, "refresh due (recreate strategy)", refresh=True)
    stuck_at = last + desired.ready_timeout_seconds
    if not objects.rollout(observed)[0] and now < stuck_at:
        # An interval shorter than the rollout: let it finish rather than start over.
        return Action(Do.WAIT, "refresh due, the last one still rolling", stuck_at - now)
    return Action(Do.REFRESH, "refresh due")


def spec_hash_of(daemonset: Mapping[str, Any]) -> str | None:
    return objects.annotation(daemonset, ds.SPEC_HASH_ANNOTATION)


def refreshed_at(daemonset: Mapping[str, Any]) -> float:
    """When its pods were last refreshed (wall-clock seconds): the annotation we keep, or the
    DaemonSet's creation for one made before we kept it (or by the Go original)."""
    for parsed in (
        parse_time(objects.annotation(daemonset, ds.REFRESH_ANNOTATION)),
        objects.created_at(daemonset),
    ):
        if parsed is not None:
            return parsed
    return 0.0  # unknown: refresh now


def _selector(body: Mapping[str, Any]) -> Any:
    return (body.get("spec") or {}).get("selector")
