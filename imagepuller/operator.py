"""Operator mode: one process keeps a DaemonSet for every `KubernetesImagePuller` resource.

The same reconciler as single mode, with a key per resource, as controller-runtime's: shared
watches say which keys a change concerns (``resourcewatch``), a work queue hands each key to
one of ``WORKERS`` threads, and ``reconcile(key)`` reads the resource from the cache, has its
``Controller`` look once (``Controller.step``, what single mode loops over), and writes the
resource's status from what that same look saw (``statuswriter``). The threads do not grow
with the number of resources. The DaemonSet is owned by its resource, so deleting the resource
deletes it; nothing else is made per resource.

The spec is read with the ConfigMap's validators and never written; an invalid spec changes
nothing that runs (its problems go to the status and an Event); of two resources that want
one DaemonSet name, the older keeps it (``nameclaims``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from imagepuller.config import Config, ConfigError
from imagepuller.controller import ERROR_BACKOFF, Controller, controller_client
from imagepuller.events import EventRecorder, involved
from imagepuller.health import WorkerHealth
from imagepuller.kube import Kube
from imagepuller.manager import Manager, Result
from imagepuller.metrics import Metrics
from imagepuller.nameclaims import NameClaims
from imagepuller.policy import ResourcePolicy
from imagepuller.reconciler import rollout
from imagepuller.resource import KIND
from imagepuller.resourcestatus import Observation, resource_status
from imagepuller.resourcewatch import (
    API_VERSION,
    Key,
    ResourceWatches,
    generation_of,
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


@dataclass
class Puller:
    """One resource's controller."""

    controller: Controller
    generation: int  # the newest resource generation offered to it (applied: controller's tag)
    # Its controller is over (the API refused its configuration, or it was stopped): it is
    # looked at again only for a new generation.
    ended: bool = False


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
        # Every map below is per key, and a key is looked at by one worker at a time; the lock
        # guards the maps' shape against the watch threads that read them.
        self._lock = threading.Lock()
        self.pullers: dict[Key, Puller] = {}
        self._invalid: dict[Key, tuple[int, list[str]]] = {}
        self._reported: set[tuple[Key, int, str]] = set()  # Events already sent
        self.claims = NameClaims(self.policy, self._running_name)
        self.statuses = StatusWriter(self.kube, clock)
        self.pods = RolloutPods(self.kube, clock)
        self.watches = ResourceWatches(
            api_client,
            self.kube,
            self.namespaces,
            self.queue,
            wanting=self._wanting,
            known=self._known,
        )
        self.openshift: bool | None = None  # the cluster's platform, once a controller asked

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
        with self._lock:
            pullers = list(self.pullers.values())
        for puller in pullers:
            puller.controller.request_stop()
        self.manager.stop(SHUTDOWN_SECONDS)
        for key in list(self.pullers):
            self._stop_puller(key, why="operator stopping")

    # --- what the watches ask -----------------------------------------------------------------

    def _wanting(self, namespace: str, name: str) -> set[Key]:
        """The resources whose DaemonSet is ``namespace``/``name``."""
        with self._lock:
            pullers = list(self.pullers.items())
        return {
            key
            for key, puller in pullers
            if key[0] == namespace and puller.controller.config.daemonset_name == name
        }

    def _running_name(self, key: Key) -> str | None:
        puller = self.pullers.get(key)
        return puller.controller.config.daemonset_name if puller is not None else None

    def _known(self) -> set[Key]:
        """Every resource something is kept for (a deletion missed by a watch is found)."""
        with self._lock:
            return {*self.pullers, *self._invalid, *self.statuses.keys()}

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
            self._stop_puller(key, why="name conflict")
        else:
            self._ensure(key, resource)
        requeue: float | None = None
        failed = False
        puller = self.pullers.get(key)
        if puller is not None and not puller.ended:
            step = puller.controller.step()
            puller.ended = step.exit_code is not None
            requeue, failed = step.requeue, step.failed
            if self.openshift is None:
                self.openshift = puller.controller.openshift
        self.pods.rolling.discard(key)
        status = self._status(key, resource, conflict_with)
        requeue = _sooner(requeue, self.statuses.write(key, resource, status))
        if key in self.pods.rolling:  # a rollout runs: its pods are read again for the status
            requeue = _sooner(requeue, FAILURES_EVERY)
        return Result(requeue, failed)

    def _forget(self, key: Key) -> None:
        """The resource is gone: its controller, its series and everything kept for it."""
        self._stop_puller(key, why="resource deleted")
        with self._lock:
            self._invalid.pop(key, None)
            self._reported = {sent for sent in self._reported if sent[0] != key}
            namespace_served = any(k[0] == key[0] for k in self.pullers)
        self.claims.forget(key)
        self.statuses.forget(key)
        self.pods.forget(key)
        if not namespace_served:
            self.watches.namespace_emptied(key[0])

    # --- controllers ----------------------------------------------------------------------

    def _ensure(self, key: Key, resource: dict[str, Any]) -> None:
        generation = generation_of(resource)
        puller = self.pullers.get(key)
        if self._invalid.get(key, (None,))[0] == generation:
            return  # already judged invalid; what runs (if anything) keeps running
        if (
            puller is not None
            and puller.generation == generation
            and (not puller.ended or puller.controller.rejected)
        ):
            return  # running it, or the API refused it: only a new generation is tried again
        config = self.claims.parse(key, resource)
        if isinstance(config, ConfigError):
            err = config
            self._invalid[key] = (generation, err.problems)  # what runs keeps running
            self._warn_once(key, generation, resource, "InvalidSpec", "; ".join(err.problems))
            log.error(
                "config_rejected",
                resource=f"{key[0]}/{key[1]}",
                generation=generation,
                problems=err.problems,
                note="nothing that runs was changed",
            )
            return
        self._invalid.pop(key, None)
        if puller is not None and not puller.ended:
            puller.generation = generation
            puller.controller.offer(config, generation)
            return
        if puller is not None:  # its controller ended (the API refused its configuration)
            with self._lock:
                self.pullers.pop(key)
            puller.controller.request_stop()
        self._start_puller(key, config, generation)

    def _start_puller(self, key: Key, config: Config, generation: int) -> None:
        stop = threading.Event()
        kube, _ = controller_client(
            self.api_client,
            config,
            stop=stop,
            metrics=self.metrics,
            stuck_after=self.stuck_after,
            health=self.health,
        )
        controller = Controller(
            config,
            kube,
            stop=stop,
            clock=self.clock,
            wall=self.wall,
            # Each resource is its own keeper: what one resource's controller claims or retires
            # is never taken for another's, though one process runs them all.
            identity=f"{self.identity}/{key[0]}/{key[1]}",
            delete_on_shutdown=False,
            metrics=self.metrics,
            health=self.health,
            events=EventRecorder(kube, self.identity, self.wall),
            owner=lambda _config: self.watches.resource(key),
            informer=lambda _kube, _kind, namespace, _poke: self.watches.daemonset_informer(
                namespace
            ),
            poke=lambda: self.queue.add(key),
        )
        controller.applied_tag = generation
        # The platform is the cluster's: once a controller has asked, the others need not.
        controller.openshift = self.openshift
        with self._lock:
            self.pullers[key] = Puller(controller, generation)
        log.info("puller_started", resource=f"{key[0]}/{key[1]}", daemonset=config.daemonset_name)

    def _stop_puller(self, key: Key, *, why: str) -> None:
        with self._lock:
            puller = self.pullers.pop(key, None)
        if puller is None:
            return
        controller = puller.controller
        controller.request_stop()  # its list reader, if any, and any call of its own
        controller.shutdown()  # keeps the DaemonSet (delete_on_shutdown is off): a log line
        if why == "resource deleted":
            self.metrics.forget(controller.config.namespace, controller.config.daemonset_name)
        log.info("puller_stopped", resource=f"{key[0]}/{key[1]}", why=why)

    def _warn_once(
        self,
        key: tuple[str, str],
        generation: int,
        resource: dict[str, Any],
        reason: str,
        note: str,
    ) -> None:
        """A Warning Event on the resource, once per generation and reason."""
        with self._lock:
            if (key, generation, reason) in self._reported:
                return
            self._reported.add((key, generation, reason))
        self.events.record(
            involved(resource, API_VERSION, KIND),
            warning=True,
            reason=reason,
            action="Configure",
            note=note,
        )

    # --- status ---------------------------------------------------------------------------

    def _status(
        self,
        key: tuple[str, str],
        resource: dict[str, Any],
        conflict_with: tuple[str, str] | None,
    ) -> dict[str, Any]:
        """The resource's status from what this look saw (resourcestatus.py decides)."""
        generation = int(resource["metadata"].get("generation") or 0)
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
                self._warn_once(key, generation, resource, "NameConflict", message)
            else:
                # The controller itself told (a Warning Event on this resource, and the log).
                message = str(taken_by)
            seen = Observation(generation, stored, conflict=message)
            return resource_status(seen, self.wall())
        invalid = self._invalid.get(key)
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


def _sooner(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)
