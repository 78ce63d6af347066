"""Operator mode: one process keeps a DaemonSet for every `KubernetesImagePuller` resource.

The same reconciler as single mode, with a key per resource. For each resource a ``Controller``
keeps a DaemonSet in the resource's namespace, owned by the resource, so deleting the resource
deletes it. No Deployment, ConfigMap, ServiceAccount or Role per resource: the operator's
ClusterRole covers DaemonSets directly.

One machine, as controller-runtime's: the watches are shared (one for the resources per
watched namespace, one for the DaemonSets per namespace that has a resource) and only say
which keys a change concerns (a resource itself, and the other resources of its namespace
when its claim on a DaemonSet name may have changed; a DaemonSet, the resource that owns it or
wants its name). A work queue hands each key to one of ``WORKERS`` threads, and
``reconcile(key)`` reads the resource from the watch-fed cache, has its controller look once
(``Controller.step``, what single mode loops over), and writes the resource's status from what
that same look saw. The threads do not grow with the number of resources.

- The spec is read with the ConfigMap's validators (``resource.config_from_resource``). An
  invalid spec changes nothing that runs; its problems go to the status and an Event.
- The spec is never written, only the ``status`` subresource, and only when what it says
  changed (a status that equals what is stored is not sent again).
- Two resources in one namespace that want one DaemonSet name: the older keeps it; the newer
  is reported `Ready=False`, reason `NameConflict`, and runs nothing until that changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from imagepuller.cachestatus import summarize
from imagepuller.config import (
    DEFAULT_HEALTHZ_STUCK_AFTER_SECONDS,
    Config,
    ConfigError,
)
from imagepuller.controller import ERROR_BACKOFF, Controller, controller_client
from imagepuller.daemonset import selector_labels
from imagepuller.events import EventRecorder, involved
from imagepuller.health import WorkerHealth
from imagepuller.informer import Informer
from imagepuller.kube import DAEMONSETS, PULLERS, Kube, KubeError, NotFound
from imagepuller.manager import Manager, Result
from imagepuller.metrics import Metrics
from imagepuller.policy import ResourcePolicy
from imagepuller.reconciler import rollout
from imagepuller.resource import GROUP, KIND, VERSION, config_from_resource
from imagepuller.resourcestatus import Observation, resource_status
from imagepuller.status import why_not_ready
from imagepuller.workqueue import WorkQueue

log = structlog.get_logger("imagepuller.operator")

API_VERSION = f"{GROUP}/{VERSION}"
# The leader-election Lease, in the operator's own namespace.
OPERATOR_LEASE = "imagepuller-operator"
# A status is written at most this often per resource: a rollout on many nodes changes the
# counts many times a second, and the API need not hear every one.
STATUS_MIN_INTERVAL = 1.0
# While a rollout is not complete, the pods are read this often for the status' failures: a
# pull that fails changes no DaemonSet count, so nothing else would say so.
FAILURES_EVERY = 5.0
# Waiting for the looks underway on shutdown, within the caller's own wait for this thread
# (operatorcmd's WORKER_STOP_SECONDS, 12 s): the Lease is released only after it.
SHUTDOWN_SECONDS = 10.0
# Looks at resources run on this many threads, however many resources there are. A look
# mostly waits on the API; a few at once keep one slow call from holding up every resource.
WORKERS = 4

Key = tuple[str, str]  # a resource's (namespace, name)


@dataclass
class Puller:
    """One resource's controller."""

    controller: Controller
    generation: int  # the newest resource generation offered to it (applied: controller's tag)
    # Its controller is over (the API refused its configuration, or it was stopped): it is
    # looked at again only for a new generation.
    ended: bool = False


@dataclass
class _Written:
    status: dict[str, Any]
    at: float
    # The resource's resourceVersion in the cache when we wrote, and the one our write made:
    # while the cache shows either, it has not seen anyone else's write since ours.
    seen: str = ""
    made: str = ""


@dataclass
class _Verdict:
    """Which resources of a namespace hold a DaemonSet name another one wants."""

    resources: dict[Key, dict[str, Any]] = field(default_factory=dict)
    conflicts: dict[Key, Key] = field(default_factory=dict)


def _key(resource: dict[str, Any]) -> Key:
    meta = resource["metadata"]
    return meta.get("namespace") or "", meta["name"]


def _age(resource: dict[str, Any]) -> tuple[str, str]:
    """Older first: creation time (RFC 3339 sorts as text), then the name for a tie."""
    meta = resource["metadata"]
    return meta.get("creationTimestamp") or "", meta["name"]


def _generation(obj: dict[str, Any]) -> int:
    return int(obj["metadata"].get("generation") or 0)


def _nothing() -> None:
    """A shared informer's plain notification: its ``observe`` says which keys to look at."""


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
        # Each resource's spec as read, for the generation it was read at: a Config, or the
        # problems that make it invalid.
        self._parsed: dict[Key, tuple[int, Config | ConfigError]] = {}
        self._reported: set[tuple[Key, int, str]] = set()  # Events already sent
        self._written: dict[Key, _Written] = {}
        # Per resource, while its rollout runs: (read at, failures, nodes holding every image
        # of the current template), read from the pods at most every FAILURES_EVERY seconds.
        self._failures: dict[Key, tuple[float, list[dict[str, Any]], int | None]] = {}
        self._rolling: set[Key] = set()  # the last look found the rollout incomplete
        # The watches: the resources' (one per watched namespace), the DaemonSets' (one per
        # namespace that has a resource), and the generation each resource was last seen at.
        self._resource_informers: list[Informer] = []
        self._daemonset_informers: dict[str, Informer] = {}
        self._seen_generation: dict[Key, int] = {}
        self.openshift: bool | None = None  # the cluster's platform, once a controller asked

    # --- health, for /healthz: no worker may be stuck in a look -------------------------------

    def alive(self) -> tuple[bool, str]:
        ok, why = self.health.alive()
        return (True, f"ok: {len(self.pullers)} pullers") if ok else (False, why)

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until the stop event is set; then stop every controller (keeping the
        DaemonSets: their resources own them, and the next leader adopts them)."""
        self._resource_informers = [
            Informer(self.kube, PULLERS, namespace, _nothing, observe=self._resource_changed)
            for namespace in self.namespaces
        ]
        for informer in self._resource_informers:
            informer.start()
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
        for informer in self._resource_informers:
            informer.end()
        for informer in list(self._daemonset_informers.values()):
            _end(informer)
        with self._lock:
            pullers = list(self.pullers.values())
        for puller in pullers:
            puller.controller.request_stop()
        self.manager.stop(SHUTDOWN_SECONDS)
        for key in list(self.pullers):
            self._stop_puller(key, why="operator stopping")

    # --- which keys a change concerns ---------------------------------------------------------

    def _resource_changed(self, resource: dict[str, Any] | None) -> None:
        if resource is None:  # (re)listed: any resource may have changed, or be gone
            with self._lock:
                known = {*self.pullers, *self._written, *self._invalid, *self._seen_generation}
            for key in {*known, *(_key(obj) for obj in self._cached_resources())}:
                self.queue.add(key)
            return
        key = _key(resource)
        self.queue.add(key)
        present = self._cached(key) is not None
        with self._lock:
            before = self._seen_generation.get(key)
            if present:
                self._seen_generation[key] = _generation(resource)
            else:
                self._seen_generation.pop(key, None)
        if not present or before != _generation(resource):
            # Created, deleted or edited: the DaemonSet name it claims may have changed, and
            # with it which resource of the namespace keeps a contested name.
            for peer in self._cached_resources(key[0]):
                self.queue.add(_key(peer))

    def _daemonset_changed(self, daemonset: dict[str, Any] | None, namespace: str) -> None:
        if daemonset is None:  # (re)listed
            keys = {_key(obj) for obj in self._cached_resources(namespace)}
        else:
            meta = daemonset["metadata"]
            keys = {
                (namespace, ref["name"])
                for ref in meta.get("ownerReferences") or []
                if ref.get("kind") == KIND and ref.get("name")
            }
            if not keys:  # not a resource's (yet): the resources that want its name
                with self._lock:
                    pullers = list(self.pullers.items())
                keys = {
                    key
                    for key, puller in pullers
                    if key[0] == namespace
                    and puller.controller.config.daemonset_name == meta.get("name")
                }
        for key in keys:
            self.queue.add(key)

    def _daemonset_informer(self, _kube: Kube, _kind: Any, namespace: str, _poke: Any) -> Informer:
        """The DaemonSet watch of ``namespace``, shared by every controller there."""
        with self._lock:
            informer = self._daemonset_informers.get(namespace)
            if informer is None:
                # A client of its own, so that the watch ends at once when the namespace has
                # no resource left (not when the server next closes it, within 5 minutes).
                own = Kube(self.api_client, stop=threading.Event())
                informer = Informer(
                    own,
                    DAEMONSETS,
                    namespace,
                    _nothing,
                    observe=lambda obj: self._daemonset_changed(obj, namespace),
                )
                self._daemonset_informers[namespace] = informer
        return informer

    def _cached_resources(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            obj
            for informer in self._resource_informers
            if namespace is None or informer.namespace in ("", namespace)
            for obj in informer.items()
            if namespace is None or (obj["metadata"].get("namespace") or "") == namespace
        ]

    def _cached(self, key: Key) -> dict[str, Any] | None:
        for informer in self._resource_informers:
            if informer.namespace in ("", key[0]):
                found = informer.get_in(*key)
                if found is not None:
                    # List items of a custom resource carry apiVersion and kind, watch events
                    # too; set them anyway: the owner reference and Events are built from them.
                    return {**found, "apiVersion": API_VERSION, "kind": KIND}
        return None

    # --- one look at one resource -------------------------------------------------------------

    def reconcile(self, key: Key) -> Result:
        """Look at one resource: run its controller once, then write its status from what
        that look saw. When to look again."""
        resource = self._cached(key)
        if resource is None:
            self._forget(key)
            return Result()
        conflict_with = self._judge(self._cached_resources(key[0])).conflicts.get(key)
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
        self._rolling.discard(key)
        status = self._status(key, resource, conflict_with)
        requeue = _sooner(requeue, self._write_status(key, resource, status))
        if key in self._rolling:  # a rollout runs: its pods are read again for the status
            requeue = _sooner(requeue, FAILURES_EVERY)
        return Result(requeue, failed)

    def _forget(self, key: Key) -> None:
        """The resource is gone: its controller, its series and everything kept for it."""
        self._stop_puller(key, why="resource deleted")
        with self._lock:
            self._invalid.pop(key, None)
            self._parsed.pop(key, None)
            self._written.pop(key, None)
            self._failures.pop(key, None)
            self._rolling.discard(key)
            self._reported = {sent for sent in self._reported if sent[0] != key}
            namespace_served = any(k[0] == key[0] for k in self.pullers)
            informer = None if namespace_served else self._daemonset_informers.pop(key[0], None)
        if informer is not None:  # the namespace has no resource left
            _end(informer)

    def _current_failures(
        self, key: Key, controller: Controller, daemonset: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Why nodes do not hold the images yet, and how many nodes hold every image of the
        current template (None: the pods could not be read), read from the pods at most every
        ``FAILURES_EVERY`` seconds while the rollout runs."""
        self._rolling.add(key)
        now = self.clock()
        cached = self._failures.get(key)
        if cached is not None and now - cached[0] < FAILURES_EVERY:
            return cached[1], cached[2]
        labels = selector_labels(controller.config)
        # One pod list for both: why nodes do not hold yet, and how many do.
        pods: list[dict[str, Any]] | None
        try:
            pods = self.kube.list_pods(key[0], ",".join(f"{k}={v}" for k, v in labels.items()))
        except KubeError as err:
            log.warning("pod_status_unavailable", error=str(err))
            pods = None
        found = why_not_ready(self.kube, key[0], labels, daemonset, pods or [])
        held = summarize(daemonset, pods, None).holding if pods is not None else None
        self._failures[key] = (now, found, held)
        return found, held

    def _parse(self, key: Key, resource: dict[str, Any]) -> Config | ConfigError:
        """The resource's spec read as settings, once per generation."""
        generation = _generation(resource)
        cached = self._parsed.get(key)
        if cached is not None and cached[0] == generation:
            return cached[1]
        try:
            parsed: Config | ConfigError = config_from_resource(resource, self.policy)
        except ConfigError as err:
            parsed = err
        self._parsed[key] = (generation, parsed)
        return parsed

    def _claimed_name(self, key: Key, resource: dict[str, Any]) -> str | None:
        """The DaemonSet name a resource holds a claim on: its last valid spec's. An invalid
        edit claims nothing new (it changes nothing that runs, the name included); a resource
        that never had a valid spec claims none."""
        parsed = self._parse(key, resource)
        if isinstance(parsed, Config):
            return parsed.daemonset_name
        puller = self.pullers.get(key)
        return puller.controller.config.daemonset_name if puller is not None else None

    def _judge(self, objects: list[dict[str, Any]]) -> _Verdict:
        """Of resources that claim one DaemonSet name in one namespace, the older keeps it."""
        verdict = _Verdict()
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for obj in objects:
            resource = {**obj, "apiVersion": API_VERSION, "kind": KIND}
            key = _key(resource)
            verdict.resources[key] = resource
            name = self._claimed_name(key, resource)
            if name is not None:
                groups.setdefault((key[0], name), []).append(resource)
        for members in groups.values():
            members.sort(key=_age)
            winner = _key(members[0])
            for newer in members[1:]:
                verdict.conflicts[_key(newer)] = winner
        return verdict

    # --- controllers ----------------------------------------------------------------------

    def _ensure(self, key: Key, resource: dict[str, Any]) -> None:
        generation = _generation(resource)
        puller = self.pullers.get(key)
        if self._invalid.get(key, (None,))[0] == generation:
            return  # already judged invalid; what runs (if anything) keeps running
        if (
            puller is not None
            and puller.generation == generation
            and (not puller.ended or puller.controller.rejected)
        ):
            return  # running it, or the API refused it: only a new generation is tried again
        config = self._parse(key, resource)
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
            owner=lambda _config: self._cached(key),
            informer=self._daemonset_informer,
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
                message = (
                    f"DaemonSet {self._claimed_name(key, resource)} in {key[0]} is kept for the "
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
            self._failures.pop(key, None)
            failures = controller.last_failures
        else:
            failures, held = self._current_failures(key, controller, daemonset)
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

    def _write_status(
        self, key: tuple[str, str], resource: dict[str, Any], status: dict[str, Any]
    ) -> float | None:
        """Send the status if it says something new; None, or the seconds until it may."""
        written = self._written.get(key)
        if status == (resource.get("status") or {}):
            return None
        version = str(resource["metadata"].get("resourceVersion") or "")
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
            return None  # deleted meanwhile: the next pass forgets it
        except KubeError as err:
            log.warning("status_not_written", resource=f"{key[0]}/{key[1]}", error=str(err))
            return STATUS_MIN_INTERVAL
        made_version = str((made.get("metadata") or {}).get("resourceVersion") or "")
        self._written[key] = _Written(status, now, version, made_version)
        return None


def _end(informer: Informer) -> None:
    """Stop a DaemonSet informer and cut its watch (it has a client of its own)."""
    informer.end()
    informer.kube.stop.set()
    informer.kube.interrupt()


def _sooner(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)
