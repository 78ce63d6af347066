"""Operator mode: one process keeps a DaemonSet for every `KubernetesImagePuller` resource.

The same reconciler as single mode, with many keys: for each resource, a ``Controller`` (its
own thread, its own cancellable API client) keeps a DaemonSet in the resource's namespace,
owned by the resource, so deleting the resource deletes it. No Deployment, ConfigMap,
ServiceAccount or Role per resource: the operator's ClusterRole covers DaemonSets directly.

What this module adds around the controllers is level-triggered too: on any change (a resource
added, edited or deleted; a controller's look), ``sync`` reads every resource from the
watch-fed cache and decides which controllers run with which configuration, and what each
resource's status says.

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
from imagepuller.controller import Controller, controller_client
from imagepuller.daemonset import selector_labels
from imagepuller.events import EventRecorder, involved
from imagepuller.informer import Informer, WakeUp
from imagepuller.kube import PULLERS, Kube, KubeError, NotFound
from imagepuller.metrics import Metrics
from imagepuller.policy import ResourcePolicy
from imagepuller.reconciler import rollout
from imagepuller.resource import GROUP, KIND, VERSION, config_from_resource
from imagepuller.resourcestatus import Observation, resource_status
from imagepuller.status import why_not_ready

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
# Stopping every controller on shutdown, within the caller's own wait for this thread
# (operatorcmd's WORKER_STOP_SECONDS, 12 s): the Lease is released only after it.
SHUTDOWN_SECONDS = 10.0


@dataclass
class Puller:
    """One resource's controller, running in its own thread."""

    controller: Controller
    thread: threading.Thread
    generation: int  # the newest resource generation offered to it (applied: controller's tag)
    # Its resource was deleted: once its thread ends, its metrics series go too.
    gone: bool = False


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
    """What ``sync`` decided for every resource."""

    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    conflicts: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)


def _key(resource: dict[str, Any]) -> tuple[str, str]:
    meta = resource["metadata"]
    return meta.get("namespace") or "", meta["name"]


def _age(resource: dict[str, Any]) -> tuple[str, str]:
    """Older first: creation time (RFC 3339 sorts as text), then the name for a tie."""
    meta = resource["metadata"]
    return meta.get("creationTimestamp") or "", meta["name"]


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
        self.wake = WakeUp(stop)
        self.pullers: dict[tuple[str, str], Puller] = {}
        self._invalid: dict[tuple[str, str], tuple[int, list[str]]] = {}
        # Each resource's spec as read, for the generation it was read at: a Config, or the
        # problems that make it invalid.
        self._parsed: dict[tuple[str, str], tuple[int, Config | ConfigError]] = {}
        self._reported: set[tuple[tuple[str, str], int, str]] = set()  # Events already sent
        self._written: dict[tuple[str, str], _Written] = {}
        self._resources: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._informers: list[Informer] = []
        # Per resource, while its rollout runs: (read at, failures, nodes holding every image
        # of the current template), read from the pods at most every FAILURES_EVERY seconds.
        self._failures: dict[tuple[str, str], tuple[float, list[dict[str, Any]], int | None]] = {}
        self._incomplete = False  # some rollout is not complete: look again soon

    # --- health, for /healthz: every controller's loop must be alive --------------------------

    def alive(self) -> tuple[bool, str]:
        for key, puller in list(self.pullers.items()):
            ok, why = puller.controller.health.alive()
            if not ok:
                return False, f"{key[0]}/{key[1]}: {why}"
        return True, f"ok: {len(self.pullers)} pullers"

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until the stop event is set; then stop every controller (keeping the
        DaemonSets: their resources own them, and the next leader adopts them)."""
        self._informers = [
            Informer(self.kube, PULLERS, namespace, self.wake.poke).start()
            for namespace in self.namespaces
        ]
        log.info("operator_started", namespaces=list(self.namespaces), identity=self.identity)
        while not self.stop.is_set():
            requeue: float | None = None
            try:
                if all(informer.has_synced() for informer in self._informers):
                    requeue = self.sync()
            except Exception:  # noqa: BLE001 - one bad pass must not end the operator
                log.exception("operator_sync_failed")
                requeue = 2.0
            self.wake.wait(requeue)
        self.shutdown()

    def shutdown(self) -> None:
        """Stop every controller and wait for them, all within SHUTDOWN_SECONDS: the Lease is
        released after this, and no controller may still be writing then."""
        for informer in self._informers:
            informer.end()
        stopping = list(self.pullers.values())
        for key in list(self.pullers):
            self._stop_puller(key, why="operator stopping")
        deadline = self.clock() + SHUTDOWN_SECONDS
        for puller in stopping:
            puller.thread.join(max(0.0, deadline - self.clock()))

    def sync(self) -> float | None:
        """One pass over every resource; returns when to look again (a deferred status)."""
        verdict = self._judge([obj for informer in self._informers for obj in informer.items()])
        with self._lock:
            self._resources = verdict.resources
        for key in list(self.pullers):
            if key not in verdict.resources or key in verdict.conflicts:
                self._stop_puller(key, why="resource deleted" if key not in verdict.resources
                                  else "name conflict")  # fmt: skip
        for key in list(self._invalid):
            if key not in verdict.resources:
                del self._invalid[key]
        for key in list(self._written):
            if key not in verdict.resources:
                del self._written[key]
        self._reported = {sent for sent in self._reported if sent[0] in verdict.resources}
        for key, resource in verdict.resources.items():
            if key not in verdict.conflicts:
                self._ensure(key, resource)
        requeue: float | None = None
        self._incomplete = False
        for key in list(self._failures):
            if key not in self.pullers:
                del self._failures[key]
        for key, resource in verdict.resources.items():
            status = self._status(key, resource, verdict.conflicts.get(key))
            wait = self._write_status(key, resource, status)
            if wait is not None:
                requeue = wait if requeue is None else min(requeue, wait)
        if self._incomplete:
            requeue = FAILURES_EVERY if requeue is None else min(requeue, FAILURES_EVERY)
        return requeue

    def _current_failures(
        self, key: tuple[str, str], controller: Controller, daemonset: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Why nodes do not hold the images yet, and how many nodes hold every image of the
        current template (None: the pods could not be read), read from the pods at most every
        ``FAILURES_EVERY`` seconds while the rollout runs."""
        self._incomplete = True
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

    def _parse(self, key: tuple[str, str], resource: dict[str, Any]) -> Config | ConfigError:
        """The resource's spec read as settings, once per generation."""
        generation = int(resource["metadata"].get("generation") or 0)
        cached = self._parsed.get(key)
        if cached is not None and cached[0] == generation:
            return cached[1]
        try:
            parsed: Config | ConfigError = config_from_resource(resource, self.policy)
        except ConfigError as err:
            parsed = err
        self._parsed[key] = (generation, parsed)
        return parsed

    def _claimed_name(self, key: tuple[str, str], resource: dict[str, Any]) -> str | None:
        """The DaemonSet name a resource holds a claim on: its last valid spec's. An invalid
        edit claims nothing new (it changes nothing that runs, the name included); a resource
        that never had a valid spec claims none."""
        parsed = self._parse(key, resource)
        if isinstance(parsed, Config):
            return parsed.daemonset_name
        puller = self.pullers.get(key)
        return puller.controller.config.daemonset_name if puller is not None else None

    def _judge(self, objects: list[dict[str, Any]]) -> _Verdict:
        verdict = _Verdict()
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for obj in objects:
            # List items of a custom resource carry apiVersion and kind, watch events too; set
            # them anyway: the owner reference and Events are built from them.
            resource = {**obj, "apiVersion": API_VERSION, "kind": KIND}
            key = _key(resource)
            verdict.resources[key] = resource
            name = self._claimed_name(key, resource)
            if name is not None:
                groups.setdefault((key[0], name), []).append(resource)
        for key in list(self._parsed):
            if key not in verdict.resources:
                del self._parsed[key]
        for members in groups.values():
            members.sort(key=_age)
            winner = _key(members[0])
            for newer in members[1:]:
                verdict.conflicts[_key(newer)] = winner
        return verdict

    # --- controllers ----------------------------------------------------------------------

    def _current(self, key: tuple[str, str]) -> dict[str, Any] | None:
        with self._lock:
            return self._resources.get(key)

    def _ensure(self, key: tuple[str, str], resource: dict[str, Any]) -> None:
        generation = int(resource["metadata"].get("generation") or 0)
        puller = self.pullers.get(key)
        if self._invalid.get(key, (None,))[0] == generation:
            return  # already judged invalid; what runs (if anything) keeps running
        if (
            puller is not None
            and puller.generation == generation
            and (puller.thread.is_alive() or puller.controller.rejected)
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
        if puller is not None and puller.thread.is_alive():
            puller.generation = generation
            puller.controller.offer(config, generation)
            return
        if puller is not None:  # its controller ended (the API refused its configuration)
            self.pullers.pop(key)
        self._start_puller(key, config, generation)

    def _start_puller(self, key: tuple[str, str], config: Config, generation: int) -> None:
        stop = threading.Event()
        kube, health = controller_client(
            self.api_client, config, stop=stop, metrics=self.metrics, stuck_after=self.stuck_after
        )
        controller = Controller(
            config,
            kube,
            stop=stop,
            # Each resource is its own keeper: what one resource's controller claims or retires
            # is never taken for another's, though one process runs them all.
            identity=f"{self.identity}/{key[0]}/{key[1]}",
            delete_on_shutdown=False,
            metrics=self.metrics,
            health=health,
            events=EventRecorder(kube, self.identity, self.wall),
            owner=lambda _config: self._current(key),
        )
        controller.applied_tag = generation
        controller.on_look = self.wake.poke
        # The platform is the cluster's: once a controller has asked, the others need not.
        controller.openshift = next(
            (
                p.controller.openshift
                for p in self.pullers.values()
                if p.controller.openshift is not None
            ),
            None,
        )
        thread = threading.Thread(
            target=lambda: self._run_controller(puller),
            name=f"puller-{key[0]}/{key[1]}",
            daemon=True,
        )
        puller = Puller(controller, thread, generation)
        self.pullers[key] = puller
        thread.start()
        log.info("puller_started", resource=f"{key[0]}/{key[1]}", daemonset=config.daemonset_name)

    def _run_controller(self, puller: Puller) -> None:
        try:
            puller.controller.run()
        finally:
            if puller.gone:
                # After the thread's last write of them, so none comes back.
                config = puller.controller.config
                self.metrics.forget(config.namespace, config.daemonset_name)
            self.wake.poke()  # its status changes (or it was refused): look again

    def _stop_puller(self, key: tuple[str, str], *, why: str) -> None:
        puller = self.pullers.pop(key, None)
        if puller is None:
            return
        puller.gone = why == "resource deleted"
        puller.controller.request_stop()
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
