"""The puller's lifecycle as a reconciler: look at the DaemonSet, do one thing, look again.

Watches (informers) only say "something changed"; ``reconcile`` reads the configuration in
force and the DaemonSet from the watch-fed cache, lets ``reconciler.decide`` choose one action
(create, take over, update the template, roll for a refresh, delete for a recreate, wait,
stand aside, nothing), performs it, and returns when to look again. A missed event, a restart
or a retry cannot confuse it: what matters is read from the cluster each time, and what must
survive a restart (what the pods are, when they were last refreshed, which process keeps them)
is kept in the DaemonSet's annotations.

One look is put together from parts, each with the state it needs and the reason it keeps it
in memory (see their docstrings): ``desiredstate`` (the DaemonSet wanted, checked by the API),
``offers`` (new configurations until the API accepts them), ``pullerlists`` (IMAGES_FROM),
``executor`` (the action's write, and what only this process knows of its writes) and
``rolloutreport`` (logs, Events and metrics of the rollout).

Errors never end the loop: ``step`` classifies them, and the loop (``run``, or operator mode's
workers) tries again after a growing pause. Time and the stop event are injected so tests
drive it without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from imagepuller.config import Config
from imagepuller.desiredstate import DesiredState, OwnerLookup
from imagepuller.events import EventRecorder, PullerEvents
from imagepuller.executor import Executor, WriteWatch
from imagepuller.failures import Failure
from imagepuller.health import Health
from imagepuller.informer import Informer
from imagepuller.kube import DAEMONSETS, Kube
from imagepuller.leaving import leave_daemonset
from imagepuller.listsource import ImageListSource
from imagepuller.manager import sooner
from imagepuller.metrics import Metrics
from imagepuller.offers import ConfigOffers, config_applied
from imagepuller.ownership import Ownership, Whose
from imagepuller.pullerlists import ListsContext, PullerLists
from imagepuller.pullerloop import ERROR_BACKOFF, PULLER, PullerLoop, Step
from imagepuller.reconciler import decide, spec_hash_of
from imagepuller.rolloutreport import RolloutReport
from imagepuller.workqueue import WorkQueue

log = structlog.get_logger("imagepuller.controller")

# While the cache has not shown our own last write yet, look again this soon.
CATCH_UP_POLL = 0.2


def controller_client(
    api_client: Any,
    config: Config,
    *,
    stop: threading.Event,
    metrics: Metrics,
    stuck_after: float,
    health: Health | None = None,
) -> tuple[Kube, Health]:
    """A controller's own client and its health: transient failures retried for as long as
    READY_TIMEOUT (at least 30 s), and every answer counted in ``metrics`` and taken by the
    health as progress. The same for `run` and for each puller of the operator (whose
    controllers share the workers' health)."""
    kube = Kube(api_client, stop=stop, retry_for=max(30.0, config.ready_timeout_seconds))
    if health is None:
        health = Health(stuck_after)

    def on_request(verb: str, resource: str, code: str, seconds: float) -> None:
        metrics.api_request(verb, resource, code, seconds)
        health.progress()

    kube.on_request = on_request
    return kube, health


class Controller:
    def __init__(
        self,
        config: Config,
        kube: Kube,
        *,
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        identity: str = "",
        informer: Callable[..., Informer] = Informer,
        lists: ImageListSource | None = None,
        metrics: Metrics | None = None,
        health: Health | None = None,
        events: EventRecorder | None = None,
        owner: OwnerLookup | None = None,
        delete_on_shutdown: bool = True,
        poke: Callable[[], None] | None = None,
    ):
        # The configuration in force; a new one waits in ``offers`` for the API's verdict.
        self.config = config
        self.kube = kube
        self.stop = stop
        self.clock = clock  # for deadlines (monotonic)
        self.wall = wall  # for the refresh schedule, kept in the cluster as a time of day
        # Names this controller in the DaemonSets it keeps (host name and pid by default).
        self.identity = identity
        # Single mode's work queue, with its one key; the pause a growing backoff waits on
        # the clock above (tests replace ``queue.pause`` to move their clock instead).
        self.queue: WorkQueue[str] = WorkQueue(
            clock, base_delay=ERROR_BACKOFF[0], max_delay=ERROR_BACKOFF[1]
        )
        # Says "look again" (a watch event, a list read): this controller's own queue, or in
        # operator mode the operator's work queue with this resource's key.
        self.poke = poke or self.look_again
        # The watch of our DaemonSet's namespace (tests give a fake informer).
        self.watch = DaemonSetWatch(kube, informer, self.poke)
        self.metrics = metrics or Metrics()
        self.health = health or Health()
        self.events = events or EventRecorder(kube, identity, wall)
        # Single mode: told of a configuration not applied, to report it on the ConfigMap.
        self.on_rejected: Callable[[Config, str], None] | None = None
        self.state = DesiredState(kube, identity, owner)
        # An Event about the puller goes on its owner, or on its DaemonSet without one.
        self._event = PullerEvents(
            self.events,
            lambda: self.state.owner(self.config),
            lambda: self.watch.current(self.config),
        )
        self.offers = ConfigOffers(clock, self.metrics, self._not_applied)
        self.report = RolloutReport(kube, self.metrics, self._event, clock, wall)
        self.writes = WriteWatch(kube, identity, clock)
        self.executor = Executor(
            kube, identity, self.state, self.report, self._event, wall, self.writes
        )
        self.lists = PullerLists(
            lists or ImageListSource(),
            ListsContext(
                check=self.state.check,
                is_ours=self.executor.is_ours,
                owner=self.state.owner,
                events=self.events,
                metrics=self.metrics,
                poke=self.poke,
                stop=stop,
                clock=clock,
            ),
        )
        # What the last look saw, for operator mode's status in the same reconcile: our
        # DaemonSet (None when the one of our name is not ours), and whether its template is
        # the configuration in force's.
        self.last_observed: dict[str, Any] | None = None
        self.observed_current = False
        self.rejected: str | None = None  # why the API refused the configuration at start
        self._shutdown_lock = threading.Lock()
        self._shut_down = False
        # Operator mode: never. A resource deleted with --cascade=orphan leaves its DaemonSet
        # to whoever adopts it; one deleted as usual leaves it to the garbage collector; an
        # operator stopping leaves it to the next leader.
        self.delete_on_shutdown = delete_on_shutdown
        self.loop = PullerLoop(self)

    # What operator mode's status reads of the last look, kept by the parts that know it.

    @property
    def openshift(self) -> bool | None:
        return self.state.openshift

    @property
    def applied_tag(self) -> int | None:
        return self.offers.applied_tag

    @property
    def refused(self) -> tuple[int | None, str] | None:
        return self.offers.refused

    @property
    def refused_by_api(self) -> bool:
        return self.offers.refused_by_api

    @property
    def conflict(self) -> str | None:
        return self.executor.conflict

    @property
    def last_failures(self) -> list[Failure]:
        return self.report.failures

    @property
    def reading_lists(self) -> bool:
        return self.lists.reading

    # --- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Single mode: the manager with this puller's one key, until the stop event is set;
        then shut down. Returns the exit code."""
        code = self.loop.run()
        self.shutdown()
        self.watch.end()
        return code

    def step(self) -> Step:
        """One reconcile with its errors classified (``PullerLoop.step``): never raises."""
        return self.loop.step()

    def request_stop(self) -> None:
        """Stop from another thread (a signal): set the stop event, cut every watch and call
        short, and end the wait for the next look."""
        self.stop.set()
        self.kube.interrupt()
        self.queue.shutdown()

    def look_again(self) -> None:
        """Single mode: look at the puller again as soon as the worker is free."""
        self.queue.add(PULLER)

    def offer(self, config: Config, tag: int | None = None) -> None:
        """A new configuration (a ConfigMap edit, a resource's new generation: ``tag``):
        applied at the next reconcile once the API accepts it; called from another thread."""
        self.offers.offer(config, tag)
        self.look_again()

    # --- one look -----------------------------------------------------------------------

    def reconcile(self) -> float | None:
        """One look: returns the seconds until the next (None: when something changes)."""
        self.state.detect_platform()
        offered, offer_retry = self.offers.take(self.config, self._check)
        if offered is not None:
            self._apply(offered)
        return sooner(self._look(), offer_retry)

    def _look(self) -> float | None:
        cfg = self.config
        informer = self.watch.informer(cfg.namespace)
        if not informer.has_synced():
            return None  # the informer pokes once its first list is in
        caught_up, observed = self.writes.caught_up(cfg, informer.get(cfg.daemonset_name))
        if not caught_up:
            return CATCH_UP_POLL  # the watch has not delivered our own last write yet
        self.lists.look(cfg, observed)
        effective = self.lists.effective(cfg)
        if not effective.images:
            return self.lists.wait_for_images(cfg)
        desired = self.state.desired(effective)
        # Before anything is written. A new configuration was checked when it was offered; so
        # this only asks the API at start, where a refusal exits with nothing touched.
        self.state.validate(desired)
        if self.executor.notice(cfg, observed):
            assert observed is not None
            self.report.notice(cfg, observed)
        else:
            self.report.stop_following()
        # What a status may be made of: only a DaemonSet of ours, and whether its template is
        # the one this configuration makes (the images it holds are the ones wanted).
        whose = self.executor.whose(observed, cfg) if observed is not None else None
        ours = whose is not None and whose.ours
        self.last_observed = observed if ours else None
        self.observed_current = ours and spec_hash_of(observed or {}) == desired.spec_hash
        action = decide(
            desired,
            observed,
            self.wall(),
            identity=self.identity,
            claimed=self.executor.claimed(cfg),
            whose=whose or Ownership(Whose.OURS),  # nothing observed: decide makes it
        )
        held = self.lists.hold(cfg, action, observed)
        if held is not None:
            return sooner(held, self.report.deadline(cfg))
        self.lists.images_found()
        requeue = self.executor.perform(action, desired, observed, effective)
        self.executor.earlier.retire(cfg, observed)
        return sooner(sooner(requeue, self.report.deadline(cfg)), self.lists.seconds_to_retry())

    # --- configuration ------------------------------------------------------------------

    def _check(self, cfg: Config) -> None:
        """The API's verdict on what ``cfg`` makes. With IMAGES_FROM alone and its lists not
        read yet there is nothing to check yet; the reading validates what it brings."""
        effective = self.lists.effective(cfg)
        if effective.images:
            self.state.check(effective)

    def _apply(self, offered: Config) -> None:
        previous, self.config = self.config, offered
        config_applied(previous, offered)
        if (offered.namespace, offered.daemonset_name) != (
            previous.namespace,
            previous.daemonset_name,
        ):
            self.executor.renamed(previous)

    def _not_applied(self, offered: Config, why: str, refused: bool) -> None:
        if self.on_rejected:
            self.on_rejected(offered, why)  # single mode: on the ConfigMap that was edited
        else:
            self._event(
                warning=True,
                reason="ConfigRejected" if refused else "ConfigNotChecked",
                action="Configure",
                note=why,
            )

    # --- stopping -----------------------------------------------------------------------

    def shutdown(self) -> None:
        """Keep the DaemonSet when our Deployment owns it (a restart or an upgrade adopts it;
        an uninstall deletes the Deployment and the garbage collector removes it); delete it
        when nothing owns it (`make run`, the CLI against a remote cluster).

        Safe to call twice and from two threads (the CLI calls it itself when the worker is
        stuck in a call): only the first call acts, a second waits for it.
        """
        with self._shutdown_lock:
            if self._shut_down:
                return
            self._shut_down = True
            self._delete_on_shutdown()

    def _delete_on_shutdown(self) -> None:
        leave_daemonset(
            self.kube,
            self.config,
            self.executor.current_uid,
            self.watch.current(self.config),
            delete=self.delete_on_shutdown,
        )


class DaemonSetWatch:
    """The watch of the namespace our DaemonSet is in: one at a time (a new namespace ends
    the old watch)."""

    def __init__(self, kube: Kube, new: Callable[..., Informer], poke: Callable[[], None]):
        self.kube = kube
        self._new = new
        self.poke = poke
        self._watched: tuple[str, Informer] | None = None  # (namespace, its informer)

    def informer(self, namespace: str) -> Informer:
        if self._watched is None or self._watched[0] != namespace:
            self.end()
            informer = self._new(self.kube, DAEMONSETS, namespace, self.poke).start()
            self._watched = (namespace, informer)
        return self._watched[1]

    def current(self, cfg: Config) -> dict[str, Any] | None:
        """The DaemonSet of ``cfg``'s name in the cache (None before the first look)."""
        if self._watched is None or self._watched[0] != cfg.namespace:
            return None
        return self._watched[1].get(cfg.daemonset_name)

    def end(self) -> None:
        if self._watched is not None:
            self._watched[1].end()
