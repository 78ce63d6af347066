"""Operator mode: one process keeps a DaemonSet for every `KubernetesImagePuller` resource.

The same reconciler as single mode, with a key per resource, as controller-runtime's: shared
watches say which keys a change concerns (``resourcewatch``), a work queue hands each key to
one of ``WORKERS`` threads, and ``reconcile(key)`` reads the resource from the cache, has its
``Controller`` look once (``Controller.step``, what single mode loops over), and writes the
resource's status from what that same look saw (``statuswriter``). The controllers, one per
resource, are kept by ``pullerset``. The threads do not grow with the number of resources.
The DaemonSet is owned by its resource, so deleting the resource deletes it; nothing else is
made per resource.

The spec is read with the ConfigMap's validators and never written; an invalid spec changes
nothing that runs (its problems go to the status and an Event); of two resources that want
one DaemonSet name, the older keeps it (``nameclaims``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from imagepuller import objects
from imagepuller.events import EventRecorder
from imagepuller.health import WorkerHealth
from imagepuller.kube import Kube
from imagepuller.manager import Manager, Result, sooner
from imagepuller.metrics import Metrics
from imagepuller.nameclaims import NameClaims
from imagepuller.objects import rollout
from imagepuller.policy import ResourcePolicy
from imagepuller.pullerloop import ERROR_BACKOFF
from imagepuller.pullerset import PullerSet, PullerWiring
from imagepuller.resourcestatus import Observation, resource_status
from imagepuller.resourcewatch import (
    Key,
    ResourceWatches,
)
from imagepuller.settings import DEFAULT_HEALTHZ_STUCK_AFTER_SECONDS
from imagepuller.statuswriter import FAILURES_EVERY, RolloutPods, StatusWriter
from imagepuller.workqueue import WorkQueue

log = structlog.get_logger("imagepuller.operator")

# The leader-election Lease, in the operator's own namespace.
OPERATOR_LEASE = "imagepuller-operator"
# Waiting for the looks underway on shutdown, within the caller's own wait for this thread
# (operatorcmd's WORKER_STOP_SECONDS, 12 s): the Lease is released only after it.
SHUTDOWN_SECONDS = 10.0
# Looks at resources run on this many threads, however many resources there are. A look
# mostly waits on the API; several at once keep slow calls from holding up every resource.
WORKERS = 8


class Operator:
    def __init__(
        self,
        api_client: Any,
        *,
        identity: str,
        namespaces: tuple[str, ...] = (),
        stop: threading.Event,
        metrics: Metrics | None = None,
        stuck_after: float = DEFAULT_HEALTHZ_STUCK_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        policy: ResourcePolicy | None = None,
        workers: int = WORKERS,
    ):
        self.api_client = api_client
        # What a resource may ask (init image, tolerations, ceilings): refused as InvalidSpec.
        self.policy = policy or ResourcePolicy()
        self.identity = identity
        self.namespaces = namespaces or ("",)  # "": every namespace
        self.stop = stop
        self.metrics = metrics or Metrics()
        self.stuck_after = stuck_after
        self.clock = clock
        self.wall = wall
        self.kube = Kube(api_client, stop=stop)
        self.events = EventRecorder(self.kube, identity, wall)
        self.health = WorkerHealth(stuck_after, clock)
        self.queue: WorkQueue[Key] = WorkQueue(
            clock, base_delay=ERROR_BACKOFF[0], max_delay=ERROR_BACKOFF[1]
        )
        self.manager = Manager(
            self.reconcile,
            self.queue,
            workers=workers,
            health=self.health,
            describe=lambda key: f"{key[0]}/{key[1]}",
        )
        self.claims = NameClaims(self.policy, lambda key: self.set.running_name(key))
        self.set = PullerSet(
            PullerWiring(
                api_client,
                identity,
                self.metrics,
                self.health,
                stuck_after,
                clock,
                wall,
                owner=lambda key: self.watches.resource(key),
                informer=lambda namespace: self.watches.daemonset_informer(namespace),
                look_again=self.queue.add,
            ),
            self.events,
            self.claims.parse,
        )
        self.pullers = self.set.by_key
        self.statuses = StatusWriter(self.kube, clock)
        self.pods = RolloutPods(self.kube, clock)
        self.watches = ResourceWatches(
            api_client,
            self.kube,
            self.namespaces,
            self.queue,
            wanting=self.set.wanting,
            known=self._known,
        )

    # --- health, for /healthz: no worker may be stuck in a look -------------------------------

    def alive(self) -> tuple[bool, str]:
        ok, why = self.health.alive()
        return (True, f"ok: {len(self.pullers)} pullers") if ok else (False, why)

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until the stop event is set; then stop every controller (keeping the
        DaemonSets: their resources own them, and the next leader adopts them)."""
        self.watches.start()
        log.info("operator_started", namespaces=list(self.namespaces), identity=self.identity)
        self.manager.start()
        self.stop.wait()
        self.shutdown()

    def request_stop(self) -> None:
        """Stop from another thread (a signal, the Lease lost): cut every call short."""
        self.stop.set()
        self.kube.interrupt()

    def shutdown(self) -> None:
        """Stop every controller and wait for the looks underway, all within
        SHUTDOWN_SECONDS: the Lease is released after this, and no look may still be writing
        then."""
        self.watches.end()
        with self.set.lock:
            pullers = list(self.pullers.values())
        for puller in pullers:
            puller.controller.request_stop()
        self.manager.stop(SHUTDOWN_SECONDS)
        for key in list(self.pullers):
            self.set.stop(key, why="operator stopping")

    # --- what the watches ask -----------------------------------------------------------------

    def _known(self) -> set[Key]:
        """Every resource something is kept for (a deletion missed by a watch is found)."""
        return {*self.set.keys(), *self.statuses.keys()}

    # --- one look at one resource -------------------------------------------------------------

    def reconcile(self, key: Key) -> Result:
        """Look at one resource: run its controller once, then write its status from what
        that look saw. When to look again."""
        resource = self.watches.resource(key)
        if resource is None:
            self._forget(key)
            return Result()
        conflict_with = self.claims.judge(self.watches.resources(key[0])).conflicts.get(key)
        if conflict_with is not None:
            self.set.stop(key, why="name conflict")
        else:
            self.set.ensure(key, resource)
        requeue: float | None = None
        failed = False
        puller = self.pullers.get(key)
        if puller is not None and not puller.ended:
            step = puller.controller.step()
            puller.ended = step.exit_code is not None
            requeue, failed = step.requeue, step.failed
            if self.set.openshift is None:
                self.set.openshift = puller.controller.openshift
        self.pods.rolling.discard(key)
        status = self._status(key, resource, conflict_with)
        requeue = sooner(requeue, self.statuses.write(key, resource, status))
        if key in self.pods.rolling:  # a rollout runs: its pods are read again for the status
            requeue = sooner(requeue, FAILURES_EVERY)
        return Result(requeue, failed)

    def _forget(self, key: Key) -> None:
        """The resource is gone: its controller, its series and everything kept for it."""
        namespace_served = self.set.forget(key)
        self.claims.forget(key)
        self.statuses.forget(key)
        self.pods.forget(key)
        if not namespace_served:
            self.watches.namespace_emptied(key[0])

    # --- status ---------------------------------------------------------------------------

    def _status(
        self,
        key: tuple[str, str],
        resource: dict[str, Any],
        conflict_with: tuple[str, str] | None,
    ) -> dict[str, Any]:
        """The resource's status from what this look saw (resourcestatus.py decides)."""
        generation = objects.generation(resource)
        stored = resource.get("status") or {}
        puller = self.pullers.get(key)
        taken_by = puller.controller.conflict if puller is not None else None
        if conflict_with is not None or taken_by is not None:
            if conflict_with is not None:
                name = self.claims.claimed_name(key, resource)
                message = (
                    f"DaemonSet {name} in {key[0]} is kept for the "
                    f"older resource {conflict_with[1]}; rename one (spec.daemonsetName) or "
                    "remove one"
                )
                self.set.warn_once(key, generation, resource, "NameConflict", message)
            else:
                # The controller itself told (a Warning Event on this resource, and the log).
                message = str(taken_by)
            seen = Observation(generation, stored, conflict=message)
            return resource_status(seen, self.wall())
        invalid = self.set.invalid.get(key)
        problems = invalid[1] if invalid else None
        controller = puller.controller if puller else None
        if controller is not None and controller.rejected:
            problems = [controller.rejected]
        # The newest generation offered, refused by the API (or not checkable): reported as
        # observed, while what runs stays the last applied one's.
        problem_reason = "InvalidSpec"
        applied = observed_generation = generation
        if controller is not None and puller is not None:
            applied = observed_generation = controller.applied_tag or puller.generation
            refusal = controller.refused
            if refusal is not None and refusal[0] == puller.generation:
                observed_generation = puller.generation
                if not problems:
                    problems = [refusal[1]]
                    problem_reason = (
                        "InvalidSpec" if controller.refused_by_api else "SpecNotChecked"
                    )
        daemonset = controller.last_observed if controller else None
        if daemonset is None or controller is None:
            seen = Observation(generation, stored, problems=problems or ())
            return resource_status(seen, self.wall())
        held: int | None = None
        if rollout(daemonset)[0]:
            self.pods.complete(key)
            failures = controller.last_failures
        else:
            failures, held = self.pods.read(key, controller.config, daemonset)
        seen = Observation(
            generation,
            stored,
            problems=problems or (),
            problem_reason=problem_reason,
            applied_generation=applied,
            observed_generation=observed_generation,
            daemonset=daemonset,
            current=controller.observed_current,
            failures=failures,
            held_from_pods=held,
            kip_image=controller.config.kip_image,
        )
        return resource_status(seen, self.wall())
