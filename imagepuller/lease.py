"""Leader election on a coordination.k8s.io/v1 Lease, so that replicas of the operator can
run side by side and only one of them reconciles.

The semantics are client-go's (``k8s.io/client-go/tools/leaderelection``), written here:

* The leader renews the Lease (``renewTime``) every ``retry_period``.
* A candidate takes the Lease over once the record it observes (holder, ``renewTime``,
  ``resourceVersion``) has not changed for the Lease's ``leaseDurationSeconds``, or at once
  when the holder released it (empty ``holderIdentity``). Every write is a PUT guarded by the
  ``resourceVersion`` just read, so of two candidates only one wins (the other gets 409).
* A leader whose renewals keep failing for ``renew_deadline`` (shorter than the lease
  duration) has lost: it says so (``on_stopped_leading``) and :meth:`LeaderElector.run`
  returns, for the caller to exit.
* A graceful stop releases the Lease (:meth:`LeaderElector.release`), so a successor takes
  over at once instead of after the lease duration.
* Between renewals, the leader is only known to hold the Lease for ``renew_deadline`` after
  its last successful renewal *started* (:meth:`LeaderElector.refusal`, by the monotonic
  clock). The operator asks that before every write it sends
  (``apitransport.guard_writes``), so a leader paused past its Lease (SIGSTOP, a long GC
  pause, a frozen VM) sends nothing when it runs again, even before its renew loop has looked
  at the Lease.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from imagepuller.apierrors import Conflict, KubeError, Stopped
from imagepuller.apitime import micro_time
from imagepuller.kube import LEASES, Kube
from imagepuller.leaserecord import (
    RecordWatch,
    lease_seconds,
    new_lease,
    released,
    renewed,
    taken_over,
    transitions,
)

log = structlog.get_logger("imagepuller.lease")


class LeaderElector:
    """Campaigns for, holds and releases one Lease; :attr:`is_leader` says whether we hold it.

    ``clock`` is monotonic (every duration is measured on it); ``wall`` only stamps the
    Lease's ``acquireTime``/``renewTime``, which are for people and for other tools to read.
    """

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        stop: threading.Event,
    ):
        if not identity:
            raise ValueError("a leader election identity must not be empty")
        if not 0 < retry_period < renew_deadline < lease_duration:
            # The leader must give up (renew deadline) before anyone may take over (lease
            # duration), and must get more than one try at renewing before it gives up.
            raise ValueError(
                "leader election needs 0 < retry_period < renew_deadline < lease_duration, got "
                f"{retry_period}, {renew_deadline}, {lease_duration}"
            )
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = clock
        self._wall = wall
        self._stop = stop
        # Serialises attempts and the release: a release never races a renewal.
        self._lock = threading.Lock()
        self._is_leader = False
        # When (monotonic) the last successful acquire or renew started.
        self._renewed_at = 0.0
        # The last record we read and when (monotonic) we first saw it as it is.
        self._watch = RecordWatch(clock, lease_duration)
        # The other holder we last logged waiting for (logged once per change of holder).
        self._waiting_for: str | None = None

    @property
    def is_leader(self) -> bool:
        return self._is_leader

    def refusal(self) -> str | None:
        """None when the Lease is known held right now; otherwise why a write must not go.

        Known held: we are the leader and our last successful renewal started less than
        ``renew_deadline`` ago. Others may take the Lease over only once its record has not
        changed for ``lease_duration`` (longer) of their own time, counted from when they saw
        that renewal, which was after it started. So while this says None, nobody else can
        hold the Lease, whatever happened to this process in between (it may have been paused
        for minutes: the monotonic clock went on meanwhile)."""
        where = f"{self.namespace}/{self.name}"
        if not self._is_leader:
            return f"this replica ({self.identity}) does not hold the Lease {where}"
        since = self._clock() - self._renewed_at
        if since >= self.renew_deadline:
            return (
                f"this replica ({self.identity}) last renewed the Lease {where} "
                f"{since:.1f} s ago (renew deadline {self.renew_deadline:g} s): another "
                "replica may hold it by now"
            )
        return None

    # --- one attempt -------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One attempt: create the Lease, renew it, or take it over when it has expired.

        True when we hold the Lease afterwards. False when another holder's Lease has not
        expired, or when another replica wrote the Lease since we read it (409). Any other
        :class:`~imagepuller.apierrors.KubeError` is raised (:meth:`run` counts it as a failed
        attempt).
        """
        with self._lock:
            return self._try_acquire_or_renew()

    def _try_acquire_or_renew(self) -> bool:
        started = self._clock()
        now = micro_time(self._wall())
        lease = self.kube.get_object(LEASES, self.namespace, self.name)
        if lease is None:
            if self._read_too_long_ago(started):
                return False
            try:
                body = new_lease(self.name, self.namespace, self.identity, now, self._lease_seconds)
                written = self.kube.create_object(LEASES, self.namespace, body)
            except Conflict:
                return False  # another replica created it first; we read it next time
            return self._holding(written, started)

        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        observed = self._watch.observe(lease)
        if holder == self.identity:
            body = renewed(lease, now, self._lease_seconds)
        else:
            if holder and not self._watch.expired(spec, observed):
                self._is_leader = False
                if self._waiting_for != holder:
                    self._waiting_for = holder
                    log.info(
                        "leader_waiting", holder=holder, lease=self.name, namespace=self.namespace
                    )
                return False
            # Released (empty holder) or expired: ours, unless someone beats us to the PUT.
            body = taken_over(lease, self.identity, now, self._lease_seconds)
        if self._read_too_long_ago(started):
            return False
        try:
            written = self.kube.replace_object(LEASES, self.namespace, self.name, body)
        except Conflict:
            return False  # changed since we read it: read it again next time
        return self._holding(written, started)

    def _read_too_long_ago(self, started: float) -> bool:
        """A pause (SIGSTOP, a long GC) between reading the Lease and writing it: what was read
        may be stale, so nothing is written on it; the next attempt reads again. (The write
        would mostly fail on its resourceVersion, but a deposed leader sends nothing at all.)"""
        return self._clock() - started > self.retry_period

    def _holding(self, lease: dict[str, Any], started: float) -> bool:
        """We just wrote ``lease`` as its holder."""
        self._watch.observe(lease)
        self._renewed_at = started
        if not self._is_leader:
            self._is_leader = True
            self._waiting_for = None
            log.info(
                "leader_elected",
                identity=self.identity,
                lease=self.name,
                namespace=self.namespace,
                transitions=transitions(lease),
            )
        return True

    @property
    def _lease_seconds(self) -> int:
        return lease_seconds(self.lease_duration)

    # --- the loop ----------------------------------------------------------------------

    def run(
        self, on_started_leading: Callable[[], None], on_stopped_leading: Callable[[], None]
    ) -> None:
        """Campaign until leader, then renew until leadership is lost or ``stop`` is set.

        ``on_started_leading`` is called once, in this thread, on becoming leader: it must
        start the work elsewhere and return, since renewing goes on here. On losing
        leadership (renewals failing for ``renew_deadline``, or another holder seen),
        ``on_stopped_leading`` is called and this returns; the caller should then exit.

        When ``stop`` is set, this returns without calling ``on_stopped_leading``; the caller
        stops its work and then calls :meth:`release`. (Releasing here, before the work has
        stopped, would let a successor start while we are still writing.)
        """
        while not self._stop.is_set():
            if self._attempt():
                break
            if self._stop.wait(self.retry_period):
                return
        if self._stop.is_set():
            return
        on_started_leading()
        while not self._stop.wait(self.retry_period):
            if self._attempt():
                continue
            if self._stop.is_set():
                return
            # A leader that cannot renew returns rather than carrying on: once its renewals
            # have failed for renew_deadline, it cannot tell whether others already see its
            # lease as expired (they may after lease_duration) and a successor may already be
            # reconciling. Two reconcilers writing the same DaemonSet is what leader election
            # exists to prevent, so the lost leader stops (the caller exits, as
            # controller-runtime does) and, if it wants to lead again, campaigns anew from a
            # clean start. Seeing another holder is a definite loss: no point waiting.
            lost_to = "" if self._is_leader else self._watch.holder
            if lost_to or self._clock() - self._renewed_at >= self.renew_deadline:
                self._is_leader = False
                log.error(
                    "leader_lost",
                    identity=self.identity,
                    lease=self.name,
                    namespace=self.namespace,
                    holder=lost_to,
                    since_renewed=round(self._clock() - self._renewed_at, 3),
                )
                on_stopped_leading()
                return

    def _attempt(self) -> bool:
        """One attempt; an API failure is a failed attempt, logged."""
        try:
            return self.try_acquire_or_renew()
        except Stopped:
            return False
        except KubeError as err:
            log.warning(
                "lease_attempt_failed",
                lease=self.name,
                namespace=self.namespace,
                leader=self._is_leader,
                error=str(err),
                status=err.status,
            )
            return False

    # --- release -----------------------------------------------------------------------

    def release(self) -> None:
        """Give the Lease up, if we hold it, so a successor takes over at once. Never raises:
        a Lease we could not release expires after its duration anyway."""
        with self._lock:
            if not self._is_leader:
                return
            self._is_leader = False
            try:
                lease = self.kube.get_object(LEASES, self.namespace, self.name)
                if lease is None or (lease.get("spec") or {}).get("holderIdentity") != (
                    self.identity
                ):
                    return  # not ours any more: nothing to give up
                body = released(lease, micro_time(self._wall()))
                self.kube.replace_object(LEASES, self.namespace, self.name, body)
            except (KubeError, Stopped) as err:
                log.warning(
                    "lease_release_failed",
                    lease=self.name,
                    namespace=self.namespace,
                    error=str(err),
                )
                return
            log.info("lease_released", identity=self.identity, lease=self.name)
