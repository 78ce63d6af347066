"""The puller's lifecycle as a reconciler: look at the DaemonSet, do one thing, look again.

Watches (informers) only say "something changed"; ``reconcile`` reads the configuration in
force and the DaemonSet from the watch-fed cache, lets ``reconciler.decide`` choose one action
(create, take over, update the template, roll for a refresh, delete for a recreate, wait,
stand aside, nothing), performs it, and returns when to look again. A missed event, a restart
or a retry cannot confuse it: what matters is read from the cluster each time, and what must
survive a restart (what the pods are, when they were last refreshed, which process keeps them)
is kept in the DaemonSet's annotations.

Errors never end the loop: they are logged and the reconcile is tried again after a growing
pause. Time and the stop event are injected so tests drive it without sleeping.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from imagepuller import daemonset as ds
from imagepuller import exitcodes
from imagepuller.apierrors import (
    ConfigRejected,
    Conflict,
    DaemonSetInTheWay,
    Forbidden,
    Invalid,
    KubeError,
    NamespaceTerminating,
    Stopped,
)
from imagepuller.apitime import format_time
from imagepuller.config import Config
from imagepuller.events import EventRecorder, involved
from imagepuller.health import Health
from imagepuller.imagelists import merge_images
from imagepuller.informer import Informer, WakeUp
from imagepuller.kube import DAEMONSETS, Kube
from imagepuller.listsource import ImageListSource, ListReader
from imagepuller.logs import configure_logging
from imagepuller.metrics import Metrics
from imagepuller.ownership import Ownership, Whose, classify, controller_reference
from imagepuller.reconciler import (
    Action,
    Desired,
    Do,
    decide,
    rollout,
    spec_hash_of,
)
from imagepuller.status import all_held, failure_summary, why_not_ready

log = structlog.get_logger("imagepuller.controller")

# Pause after a failed reconcile: doubles from the first value up to the second.
ERROR_BACKOFF = (2.0, 60.0)
# 403s in a row for this long are a missing permission, not an API server warming up.
FORBIDDEN_PERSISTS_SECONDS = 10.0
# On shutdown the DaemonSet must be gone well within the pod's 30 s grace period.
SHUTDOWN_DELETE_TIMEOUT = (3.0, 10.0)  # connect, read (seconds)

# After a write, the watch-fed cache shows the old object for a moment. Until it shows ours,
# nothing is decided from it (a DaemonSet just created would look deleted); past this long the
# cache is trusted again whatever it shows (the watch may have missed it, and relists).
CATCH_UP_SECONDS = 5.0
# After READY_TIMEOUT, while the rollout is still incomplete, how often the failing pods are
# read again for the metrics and the log (one pod list each time).
FAILURES_READ_AGAIN_SECONDS = 15.0
CATCH_UP_POLL = 0.2

# Dry runs are made under another name: a create dry run of an existing name is a conflict.
DRY_RUN_SUFFIX = "-dry-run"

# A DaemonSet the API stores can still make pods that cannot be stored: each pod carries the
# template and, once running, a status per container of about the same size, and etcd refuses
# any write over 1.5 MiB (its default --max-request-bytes), so the DaemonSet controller fails
# for ever while the DaemonSet looks fine. A template over this many bytes of JSON is refused
# before anything is written.
POD_TEMPLATE_MAX_BYTES = 512 * 1024

# A refresh (and the first create) waits for a reading of the lists at most their
# IMAGES_FROM_TIMEOUT and this much more, to hear of its end.
LISTS_HOLD_MARGIN = 1.0


# After a write refused because the DaemonSet changed meanwhile: look again this soon.
CONFLICT_RETRY_SECONDS = 0.2


@dataclasses.dataclass(frozen=True)
class Step:
    """What one look came to."""

    requeue: float | None  # seconds until the next look (None: when something changes)
    failed: bool = False  # it failed: tried again after a pause that grows per failure
    conflict: bool = False  # a write met a newer DaemonSet: looked at again at once
    exit_code: int | None = None  # the controller is over, with this exit code


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


def is_ready(daemonset: dict[str, Any]) -> bool:
    """Every scheduled node runs an available pod of the current template."""
    return rollout(daemonset)[0]


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
        owner: Callable[[Config], dict[str, Any] | None] | None = None,
        delete_on_shutdown: bool = True,
        poke: Callable[[], None] | None = None,
    ):
        # The configuration in force; a new one waits in ``_offered`` for the API's verdict.
        self.config = config
        self.kube = kube
        self.stop = stop
        self.clock = clock  # for deadlines (monotonic)
        self.wall = wall  # for the refresh schedule, kept in the cluster as a time of day
        # Names this controller in the DaemonSets it keeps (host name and pid by default).
        self.identity = identity
        self.wake = WakeUp(stop)
        # Says "look again" (a watch event, a list read): this controller's own loop, or in
        # operator mode the work queue with this resource's key.
        self.poke = poke or self.wake.poke
        self._new_informer = informer  # tests give a fake one that reads their objects
        self.on_rejected: Callable[[Config, str], None] | None = None
        self._offered: tuple[Config, int | None] | None = None
        self._offer_lock = threading.Lock()
        # The newest configuration offered and not applied yet (with the caller's tag, the
        # resource generation in operator mode): its dry run was refused or failed, and is
        # tried again after a growing pause until it applies or a newer one replaces it.
        self._pending: tuple[Config, int | None] | None = None
        self._pending_retry_at: float | None = None
        self._pending_backoff = ERROR_BACKOFF[0]
        self.applied_tag: int | None = None  # the tag of the configuration in force
        # (tag, why) while the newest offer is refused or could not be checked; reported.
        self.refused: tuple[int | None, str] | None = None
        self.refused_by_api = False  # refused (True), or the check itself failed (False)
        self._informers: dict[str, Informer] = {}
        self.openshift: bool | None = None
        self._owner: tuple[str, str, dict[str, Any] | None] | None = None
        # The desired DaemonSet of the last look and what it was built from: rebuilt (and
        # hashed) only when the configuration, the owner or the platform changes, not on
        # every status update of a rollout.
        self._desired_from: tuple[Config, dict[str, Any] | None, bool] | None = None
        self._desired_last: Desired | None = None
        self._validated: set[str] = set()  # spec hashes the API accepted in a dry run
        self._claimed: set[tuple[str, str]] = set()  # (namespace, name) this process took
        self.current_uid: str | None = None  # the DaemonSet this process keeps
        self._deleting_uid: str | None = None  # deleted by us (recreate), not from outside
        self._standing_aside: str | None = None  # the other puller's identity
        self._retiring: list[tuple[str, str]] = []  # our DaemonSets under an earlier name
        # Following the current rollout: when it began (clock), whether it was reported.
        self._rollout_started: float | None = None
        self._rollout_reason = ""
        self._not_ready_reported = False
        # After READY_TIMEOUT, while the rollout stays incomplete: when the failures were last
        # read again (a pull that fails only later, e.g. a registry gone mid-refresh, changes
        # no DaemonSet count, so no watch event would tell us).
        self._failures_read_at: float | None = None
        self._failures_logged: set[tuple[str, str]] = set()  # (node, container) this rollout
        self._ready_reported = False
        self._progress: tuple[int, int] | None = None
        self._ready_counts: tuple[int, int] | None = None  # (ready, desired) last reported
        # What our last write made (uid, generation), and when, until the cache shows it.
        self._expected: tuple[str, int, float] | None = None
        # IMAGES_FROM: the lists' last good readings, the names given to their images (kept
        # so that a list changing never renames a container), and the configuration with
        # them added (rebuilt when the configuration or the lists change).
        self.lists = lists or ImageListSource()
        self._list_names: dict[str, str] = {}
        self._effective_key: tuple[Config, tuple[str, ...]] | None = None
        self._effective_last: Config = config
        self._waiting_for_images = False
        # The lists are fetched on a thread of their own (started at the first reading) and
        # applied here; the ticket of the newest reading applied; (ticket, deadline) of the
        # reading a refresh or the first create waits for; whether the first create was
        # decided (it waits for the lists once, as a refresh does).
        self._list_reader: ListReader | None = None
        self._lists_applied = 0
        self._lists_hold: tuple[int, float] | None = None
        self._lists_first_done = False
        self.metrics = metrics or Metrics()
        self.health = health or Health()
        self.events = events or EventRecorder(kube, identity, wall)
        self._refresh_started_at: float | None = None  # clock time of the refresh in progress
        # The DaemonSet's owner: the puller's Deployment, read from the API (single mode), or
        # what ``owner`` returns (operator mode: the KubernetesImagePuller resource).
        self._owner_lookup = owner
        # What the last look saw: operator mode's status is made of it, in the same reconcile.
        self.last_observed: dict[str, Any] | None = None
        self.last_failures: list[dict[str, Any]] = []
        self.rejected: str | None = None  # why the API refused the configuration at start
        # Why the DaemonSet's name is not ours to use (another object owns it), while it is so.
        self.conflict: str | None = None
        # Whether ``last_observed`` has the template of the configuration in force.
        self.observed_current = False
        self._shutdown_lock = threading.Lock()
        self._shut_down = False
        # Operator mode: never. A resource deleted with --cascade=orphan leaves its DaemonSet
        # to whoever adopts it; one deleted as usual leaves it to the garbage collector; an
        # operator stopping leaves it to the next leader.
        self.delete_on_shutdown = delete_on_shutdown
        self._forbidden_since: float | None = None  # (clock) when the 403s in a row began

    # --- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Reconcile until the stop event is set; then shut down. Returns the exit code.

        Single mode's loop over its one key; operator mode's workers call ``step`` for each
        resource instead, with the work queue's per-key backoff in place of this one."""
        backoff = ERROR_BACKOFF[0]
        code = exitcodes.OK
        while not self.stop.is_set():
            step = self.step()
            if step.exit_code is not None:
                code = step.exit_code
                break
            if step.failed:
                log.info("cycle_retry", wait_seconds=backoff)
                self.wake.wait(backoff)
                backoff = min(backoff * 2, ERROR_BACKOFF[1])
                continue
            if not step.conflict:
                backoff = ERROR_BACKOFF[0]
            self.wake.wait(step.requeue)
        self.shutdown()
        for informer in self._informers.values():
            informer.end()
        return code

    def step(self) -> Step:
        """One reconcile with its errors classified: never raises. What it came to says when
        to look again, whether it failed (retried after a growing pause), or that this
        controller is over (stopping, or a configuration the API refuses at start)."""
        self.health.look_started()
        started = self.clock()
        try:
            requeue = self.reconcile()
        except Stopped:
            self.health.look_ended()
            return Step(None, exit_code=exitcodes.OK)
        except ConfigRejected as err:
            # Deterministic, so retrying cannot help; what already runs was not touched.
            log.error("config_rejected", error=str(err))
            self.metrics.config_rejected(self.config.namespace, self.config.daemonset_name)
            self.rejected = str(err)
            self.health.look_ended()
            return Step(None, exit_code=exitcodes.CONFIG)
        except NamespaceTerminating as err:
            # Not a permission: even a cluster admin gets this 403. Tried again in case the
            # namespace is recreated (an uninstall and reinstall).
            log.error("namespace_terminating", namespace=self.config.namespace, error=str(err))
            self.health.set_not_ready(str(err))
        except Forbidden as err:
            self._refused(err)
        except Conflict as err:
            # Someone else wrote the DaemonSet between our read and our write: most often
            # another puller taking the name over, or its deletion finishing. Not an API
            # failure; the next reconcile reads it again and decides.
            log.warning(
                "daemonset_changed_meanwhile",
                name=self.config.daemonset_name,
                detail=str(err),
                note="the DaemonSet changed between our read and our write; looking again",
            )
            self.health.look_ended()
            return Step(CONFLICT_RETRY_SECONDS, conflict=True)
        except DaemonSetInTheWay as err:
            log.error("daemonset_in_the_way", error=str(err))
        except KubeError as err:
            log.error("api_error", error=str(err), status=err.status)
            self.health.set_not_ready(f"no answer from the API: {err}")
        except Exception:  # noqa: BLE001 - one bad reconcile must not end the puller
            log.exception("cycle_failed")
        else:
            self._forbidden_since = None
            self.health.set_ready()
            self._look_done("success" if requeue is None else "requeue_after", started)
            return Step(requeue)
        self._look_done("error", started)
        return Step(None, failed=True)

    def _refused(self, err: Forbidden) -> None:
        """A 403 is a missing permission only when it persists: an API server that has just
        restarted refuses for a moment while its authorization warms up."""
        now = self.clock()
        if self._forbidden_since is None:
            self._forbidden_since = now
        if now - self._forbidden_since >= FORBIDDEN_PERSISTS_SECONDS:
            log.error("api_forbidden", missing_permission=err.permission, error=str(err))
            self.health.set_not_ready(str(err))
        else:
            log.warning(
                "api_refused",
                missing_permission=err.permission,
                error=str(err),
                note="tried again; called a missing permission if it persists "
                f"{FORBIDDEN_PERSISTS_SECONDS:g} s (an API server's authorization can refuse "
                "for a moment after a restart)",
            )

    def _look_done(self, result: str, started: float) -> None:
        # Before the wait: an idle controller is not a stuck one.
        self.health.look_ended()
        self.metrics.reconciled(result, self.clock() - started)

    def request_stop(self) -> None:
        """Stop from another thread (a signal): set the stop event, cut every watch and call
        short, and wake the loop from its wait for the next look."""
        self.stop.set()
        self.kube.interrupt()
        self.wake.poke()

    def offer(self, config: Config, tag: int | None = None) -> None:
        """A new configuration (a ConfigMap edit, a resource's new generation: ``tag``):
        applied at the next reconcile once the API accepts it; called from another thread."""
        with self._offer_lock:
            self._offered = (config, tag)
        self.wake.poke()

    def reconcile(self) -> float | None:
        """One look: returns the seconds until the next (None: when something changes)."""
        if self.openshift is None:
            self.openshift = self._detect_openshift()
        offer_retry = self._take_offered()
        return _sooner(self._look(), offer_retry)

    def _look(self) -> float | None:
        cfg = self.config
        informer = self._informer(cfg.namespace)
        if not informer.has_synced():
            return None  # the informer pokes once its first list is in
        caught_up, observed = self._caught_up(cfg, informer.get(cfg.daemonset_name))
        if not caught_up:
            return CATCH_UP_POLL  # the watch has not delivered our own last write yet
        self._read_lists(cfg, observed)  # the reading that ended meanwhile, if any
        if self.lists.due(cfg):  # at start, after IMAGES_FROM changed, or to retry a failed list
            self._ask_lists(cfg, observed)
        effective = self._effective(cfg)
        if not effective.images:
            return self._wait_for_images(cfg)
        desired = self._desired(effective)
        # Before anything is written. A new configuration was checked when it was offered; so
        # this only asks the API at start, where a refusal exits with nothing touched.
        self._validate(desired)
        self._notice(observed)
        # What a status may be made of: only a DaemonSet of ours, and whether its template is
        # the one this configuration makes (the images it holds are the ones wanted).
        whose = self._whose(observed, cfg) if observed is not None else None
        ours = whose is not None and whose.ours
        self.last_observed = observed if ours else None
        self.observed_current = ours and spec_hash_of(observed or {}) == desired.spec_hash
        action = self._decide(cfg, desired, observed, whose)
        held = self._hold_for_lists(cfg, action, observed)
        if held is not None:
            return _sooner(held, self._readiness_deadline())
        requeue = self._perform(action, desired, observed, effective)
        self._retire_earlier_names(observed)
        return _sooner(_sooner(requeue, self._readiness_deadline()), self.lists.seconds_to_retry())

    def _decide(
        self,
        cfg: Config,
        desired: Desired,
        observed: dict[str, Any] | None,
        whose: Ownership | None,
    ) -> Action:
        return decide(
            desired,
            observed,
            self.wall(),
            identity=self.identity,
            claimed=(cfg.namespace, cfg.daemonset_name) in self._claimed,
            whose=whose or Ownership(Whose.OURS),  # nothing observed: decide makes it
        )

    def _expect(self, written: dict[str, Any]) -> None:
        """Remember what a write returned, so a cache that lags behind it is not acted on."""
        metadata = written.get("metadata") or {}
        if metadata.get("uid"):
            generation = int(metadata.get("generation") or 0)
            self._expected = (metadata["uid"], generation, self.clock())

    def _caught_up(
        self, cfg: Config, observed: dict[str, Any] | None
    ) -> tuple[bool, dict[str, Any] | None]:
        """Whether to decide now, and from what: the cache once it shows our last write; past
        CATCH_UP_SECONDS, the DaemonSet read from the API itself while the cache still lags
        (a watch relisting after an API server restart): a stale copy would send the same
        refresh twice, and restart a rollout."""
        if self._expected is None:
            return True, observed
        uid, generation, written_at = self._expected
        metadata = (observed or {}).get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        shows_ours = (
            metadata.get("uid") == uid
            and int(metadata.get("generation") or 0) >= generation
            and annotations.get(ds.CONTROLLER_ANNOTATION) == self.identity
        )
        if shows_ours:
            self._expected = None
            return True, observed
        if self.clock() - written_at <= CATCH_UP_SECONDS:
            return False, observed
        fresh = self.kube.get_daemonset(cfg.namespace, cfg.daemonset_name)
        version = (observed or {}).get("metadata", {}).get("resourceVersion")
        if (fresh is None and observed is None) or (
            version and version == (fresh or {}).get("metadata", {}).get("resourceVersion")
        ):
            self._expected = None  # the cache shows what is there now (someone else's write)
        return True, fresh

    # --- configuration ------------------------------------------------------------------

    def _take_offered(self) -> float | None:
        """Apply the newest configuration offered once the API accepts it; the seconds until
        a refused or unchecked one is tried again (None: nothing waits)."""
        with self._offer_lock:
            if self._offered is not None:
                self._pending, self._offered = self._offered, None
                self._pending_retry_at, self._pending_backoff = None, ERROR_BACKOFF[0]
        if self._pending is None:
            return None
        if self._pending_retry_at is not None and self.clock() < self._pending_retry_at:
            return self._pending_retry_at - self.clock()
        offered, tag = self._pending
        if offered == self.config:
            self._pending, self.applied_tag, self.refused = None, tag, None
            return None
        try:
            effective = self._effective(offered)
            # With IMAGES_FROM alone and its lists not read yet there is nothing to check
            # yet; the reading validates what it brings.
            if effective.images:
                self._validate(self._desired(effective))
        except ConfigRejected as err:
            # A bad edit changes nothing that runs. It is tried again (an admission policy or
            # webhook may change its mind) until it applies or a newer edit replaces it.
            return self._offer_not_applied(offered, tag, str(err), refused=True)
        except Stopped:
            raise  # stopping (or no longer the leader): not a failed check
        except KubeError as err:
            # The dry run itself failed (a webhook down, the API unreachable): the edit is
            # kept and checked again, never dropped.
            why = f"the API could not check the new configuration: {err}"
            return self._offer_not_applied(offered, tag, why, refused=False)
        self._pending, self._pending_retry_at, self.refused = None, None, None
        self.applied_tag = tag
        previous, self.config = self.config, offered
        if (offered.log_format, offered.log_level) != (previous.log_format, previous.log_level):
            configure_logging(offered.log_format, offered.log_level)
        changed = sorted(
            key for key, value in offered.summary().items() if previous.summary().get(key) != value
        )
        log.info("config_applied", changed=changed)
        if (offered.namespace, offered.daemonset_name) != (
            previous.namespace,
            previous.daemonset_name,
        ) and self.current_uid:
            # The new name is created; the old DaemonSet goes once the new one is ready, so
            # no node is without its images in between.
            self._retiring.append((previous.namespace, previous.daemonset_name))
            self.current_uid = None
        return None

    def _offer_not_applied(
        self, offered: Config, tag: int | None, why: str, *, refused: bool
    ) -> float:
        """Report (once per reason) a configuration not applied; when to try it again."""
        wait = self._pending_backoff
        self._pending_retry_at = self.clock() + wait
        self._pending_backoff = min(wait * 2, ERROR_BACKOFF[1])
        if self.refused == (tag, why):
            return wait
        self.refused, self.refused_by_api = (tag, why), refused
        log.error(
            "config_rejected" if refused else "config_not_checked",
            error=why,
            retry_seconds=wait,
            note="keeping the configuration in force; trying the new one again until it "
            "applies or a newer one replaces it",
        )
        if refused:
            self.metrics.config_rejected(self.config.namespace, self.config.daemonset_name)
        if self.on_rejected:
            self.on_rejected(offered, why)  # single mode: on the ConfigMap that was edited
        else:
            self._event(
                warning=True,
                reason="ConfigRejected" if refused else "ConfigNotChecked",
                action="Configure",
                note=why,
            )
        return wait

    # --- image lists (IMAGES_FROM) ------------------------------------------------------

    def _effective(self, cfg: Config) -> Config:
        """``cfg`` with the images of its lists added after IMAGES (the same object while
        neither changes, so the desired DaemonSet is not rebuilt on every look)."""
        if not cfg.images_from:
            return cfg
        references = self.lists.references(cfg)
        key = self._effective_key
        if key is None or key[0] is not cfg or key[1] != references:
            merged = merge_images(cfg.images, references, keep=self._list_names)
            listed = merged[len(cfg.images) :]
            self._list_names = {image.image: image.name for image in listed}
            self._effective_key = (cfg, references)
            self._effective_last = dataclasses.replace(cfg, images=merged)
        return self._effective_last

    def _held_list_images(self, cfg: Config, observed: dict[str, Any] | None) -> dict[str, str]:
        """image -> container name of what our running DaemonSet holds beyond IMAGES."""
        if observed is None or not self._is_ours(observed, cfg):
            return {}
        in_images = {image.image for image in cfg.images}
        containers = ds.template_containers(observed)
        return {
            c["image"]: c["name"]
            for c in containers
            if c.get("image") and c.get("name") and c["image"] not in in_images
        }

    @property
    def reading_lists(self) -> bool:
        """A reading of the lists is asked, underway, or ended and not applied yet."""
        return self._list_reader is not None and self._list_reader.busy

    def _ask_lists(self, cfg: Config, observed: dict[str, Any] | None) -> int:
        """Have the reader thread read ``cfg``'s lists; the look goes on at once with the
        lists' last good readings (after a restart, the images the DaemonSet holds). The
        ticket of the reading that will bring them."""
        held = self._held_list_images(cfg, observed)
        if not self._list_names:
            self._list_names = dict(held)  # a restart keeps the names the pods have
        self.lists.fetching(cfg, held)
        if self._list_reader is None:
            self._list_reader = ListReader(self.lists.fetch, self.poke, self.stop)
        return self._list_reader.ask(cfg)

    def _hold_for_lists(
        self, cfg: Config, action: Action, observed: dict[str, Any] | None
    ) -> float | None:
        """Before each refresh, and before the first create, the lists are read again: a
        changed list becomes an update of the template, which rolls as the refresh would have.
        Seconds to hold ``action`` for that reading (None: go on). Only these actions wait,
        and at most IMAGES_FROM_TIMEOUT and a second: a list server that hangs never holds up
        a recreate or an edit."""
        first_create = action.do is Do.CREATE and not self._lists_first_done
        if not cfg.images_from or not (first_create or _is_refresh(action)):
            self._lists_hold = None
            return None
        now = self.clock()
        if self._lists_hold is None:
            # A reading asked already (this look, or before and still underway) is new enough.
            pending = self._list_reader.pending() if self._list_reader is not None else None
            ticket = self._ask_lists(cfg, observed) if pending is None else pending
            timeout = cfg.images_from_timeout_seconds
            self._lists_hold = (ticket, now + timeout + LISTS_HOLD_MARGIN)
        ticket, deadline = self._lists_hold
        if self._lists_applied < ticket:
            if now < deadline:
                return deadline - now
            log.warning(
                "image_lists_late",
                name=cfg.daemonset_name,
                timeout_seconds=cfg.images_from_timeout_seconds,
                note="going on with the lists' last good readings; the reading is used when "
                "it ends",
            )
        self._lists_hold = None
        self._lists_first_done = True
        return None

    def _read_lists(self, cfg: Config, observed: dict[str, Any] | None) -> None:
        """Apply the reading the reader thread ended, if any: here, on the thread that makes
        every API write (the dry run of what it brings, the Events of its failures)."""
        finished = self._list_reader.take() if self._list_reader is not None else None
        if finished is None:
            return
        if not finished.fetched.made_for(cfg):
            self.lists.dropped(finished.fetched)  # IMAGES_FROM changed meanwhile: read again
            return
        self._lists_applied = finished.ticket
        self._lists_first_done = True
        before = self._effective(cfg)
        snapshot = self.lists.snapshot()
        outcome = self.lists.apply(cfg, finished.fetched)
        failures = dict(outcome.new_failures)
        after = self._effective(cfg)
        if after is not before and after.images:
            try:
                self._validate(self._desired(after))
            except ConfigRejected as err:
                self.lists.restore(snapshot)
                log.error(
                    "image_list_rejected",
                    error=str(err),
                    note="keeping the images of the lists' last good readings",
                )
                failures = dict.fromkeys(cfg.images_from, str(err))
        for _ in outcome.failing:
            self.metrics.image_list_failed(cfg.namespace, cfg.daemonset_name)
        for url, reason in failures.items():
            self._record_list_failure(cfg, observed, url, reason)

    def _record_list_failure(
        self, cfg: Config, observed: dict[str, Any] | None, url: str, reason: str
    ) -> None:
        """A Warning Event where `kubectl describe` shows it: on our DaemonSet, or before
        there is one on the puller's Deployment."""
        if observed is not None and self._is_ours(observed, cfg):
            about = involved(observed, "apps/v1", "DaemonSet")
        else:
            owner = self._owner_object(cfg)
            if owner is None:
                return
            about = _about(owner)
        self.events.record(
            about,
            warning=True,
            reason="ImageListUnavailable",
            action="ReadImageList",
            note=f"IMAGES_FROM list {url} not used: {reason}; the images of its last good "
            "reading stay cached",
        )

    def _event(self, *, warning: bool, reason: str, action: str, note: str) -> None:
        """An Event about the puller: on its Deployment (the DaemonSet's owner, what an
        administrator describes), or on the DaemonSet when running without one."""
        cfg = self.config
        owner = self._owner_object(cfg)
        if owner is not None:
            about = _about(owner)
        else:
            informer = self._informers.get(cfg.namespace)
            current = informer.get(cfg.daemonset_name) if informer else None
            if current is None:
                return
            about = involved(current, "apps/v1", "DaemonSet")
        self.events.record(about, warning=warning, reason=reason, action=action, note=note)

    def _wait_for_images(self, cfg: Config) -> float | None:
        """No image at all yet (IMAGES empty, no list read): nothing to create."""
        if not self._waiting_for_images:
            self._waiting_for_images = True
            log.warning(
                "waiting_for_images",
                name=cfg.daemonset_name,
                failing=sorted(self.lists.failing),
                note="IMAGES is empty and no IMAGES_FROM list was read yet; nothing is created "
                "until one is",
            )
        return self.lists.seconds_to_retry()

    def _desired(self, cfg: Config) -> Desired:
        owner, openshift = self._owner_object(cfg), bool(self.openshift)
        # Keyed on the owner reference, the only part of the owner the body holds: in operator
        # mode the owner is a fresh copy of the resource at every pass.
        reference = ds.owner_reference(owner) if owner is not None else None
        last = self._desired_from
        if not (last and last[0] is cfg and last[1] == reference and last[2] == openshift):
            self._desired_from = (cfg, reference, openshift)
            self._desired_last = Desired(
                self._build(cfg),
                cfg.refresh_strategy,
                cfg.caching_interval_seconds,
                cfg.ready_timeout_seconds,
            )
        assert self._desired_last is not None
        return self._desired_last

    def _build(self, cfg: Config, refreshed_at: str | None = None) -> dict[str, Any]:
        return ds.build_daemonset(
            cfg,
            owner=self._owner_object(cfg),
            openshift=bool(self.openshift),
            controller_id=self.identity or None,
            refreshed_at=refreshed_at,
        )

    def _validate(self, desired: Desired) -> None:
        """Have the API validate and admit the DaemonSet before anything running is touched."""
        if desired.spec_hash in self._validated:
            return
        template = desired.body["spec"]["template"]
        size = len(json.dumps(template, separators=(",", ":")).encode())
        if size > POD_TEMPLATE_MAX_BYTES:
            images = len(template["spec"].get("containers") or [])
            raise ConfigRejected(
                f"the DaemonSet's pod template is {size} bytes for {images} images; a pod must "
                f"fit, with its status, in etcd's 1.5 MiB request limit, so the template may be "
                f"at most {POD_TEMPLATE_MAX_BYTES} bytes: cache fewer images (IMAGES and "
                "IMAGES_FROM, or spec.images) in this puller, or split them over several pullers; "
                "nothing was changed"
            )
        probe = copy.deepcopy(desired.body)
        name = probe["metadata"]["name"]
        probe["metadata"]["name"] = name[: 63 - len(DRY_RUN_SUFFIX)] + DRY_RUN_SUFFIX
        try:
            self.kube.create_daemonset(probe, dry_run=True)
        except Invalid as err:
            raise ConfigRejected(
                f"the API rejects the DaemonSet this configuration makes, so nothing was "
                f"changed; fix the configuration: {err}"
            ) from None
        except Conflict:
            pass  # something already holds the probe's name; the real write will tell
        self._validated.add(desired.spec_hash)

    def _whose(self, observed: dict[str, Any], cfg: Config) -> Ownership:
        return classify(observed, cfg, owner=self._owner_object(cfg), created_uid=self.current_uid)

    def _is_ours(self, observed: dict[str, Any], cfg: Config) -> bool:
        return self._whose(observed, cfg).ours

    def _owner_object(self, cfg: Config) -> dict[str, Any] | None:
        """The DaemonSet's owner: given (operator mode), or the puller's own Deployment (None
        when running outside the cluster), read once."""
        if self._owner_lookup is not None:
            return self._owner_lookup(cfg)
        key = (cfg.namespace, cfg.deployment_name)
        if self._owner is None or self._owner[:2] != key:
            owner = self.kube.get_deployment(*key)
            if owner is None:
                log.info(
                    "owner_not_found",
                    deployment=cfg.deployment_name,
                    namespace=cfg.namespace,
                    note="the DaemonSet has no owner reference and is deleted on SIGTERM",
                )
            self._owner = (*key, owner)
        return self._owner[2]

    def _informer(self, namespace: str) -> Informer:
        informer = self._informers.get(namespace)
        if informer is None:
            for old in self._informers.values():
                old.end()
            informer = self._new_informer(self.kube, DAEMONSETS, namespace, self.poke).start()
            self._informers = {namespace: informer}
        return informer

    # --- acting -------------------------------------------------------------------------

    def _perform(
        self, action: Action, desired: Desired, observed: dict[str, Any] | None, cfg: Config
    ) -> float | None:
        """Carry out ``action``; ``cfg`` is the configuration in force with the lists' images."""
        self._waiting_for_images = False
        if action.do is not Do.IN_THE_WAY and self.conflict is not None:
            log.info("name_conflict_over", name=cfg.daemonset_name)
            self.conflict = None
        key = (cfg.namespace, cfg.daemonset_name)
        if action.do is not Do.STAND_ASIDE and self._standing_aside:
            log.info("standby_over", name=cfg.daemonset_name, note="the name is free again")
            self._standing_aside = None
        if action.do is Do.CREATE:
            created = self.kube.create_daemonset(self._build(cfg, format_time(self.wall())))
            self._expect(created)
            self._claimed.add(key)
            self.current_uid = created["metadata"]["uid"]
            self._start_rollout("created")
            log.info(
                "daemonset_created",
                name=cfg.daemonset_name,
                namespace=cfg.namespace,
                uid=self.current_uid,
                images=len(cfg.images),
            )
            self._event(
                warning=False,
                reason="Created",
                action="Create",
                note=f"Created DaemonSet {cfg.daemonset_name} to cache {len(cfg.images)} images "
                "on every selected node",
            )
            return None
        assert observed is not None
        uid = observed["metadata"]["uid"]
        if action.do is Do.CLAIM:
            self._expect(
                self.kube.patch_daemonset(
                    cfg.namespace,
                    cfg.daemonset_name,
                    {"metadata": {"annotations": {ds.CONTROLLER_ANNOTATION: self.identity}}},
                    uid=uid,
                )
            )
            self._claimed.add(key)
            self.current_uid = uid
            same = spec_hash_of(observed) == desired.spec_hash
            log.info(
                "daemonset_adopted",
                name=cfg.daemonset_name,
                uid=uid,
                previous=action.why,
                unchanged=same,
                note="kept as it is" if same else "its pods will be updated",
            )
            if is_ready(observed):
                # Already holding everywhere: nothing to report until something changes.
                self._ready_reported = True
                self._progress = self._ready_counts = rollout(observed)[1:]
            else:
                self._start_rollout("adopted")
            return 0.0  # look again at once: it may need an update or a refresh
        if action.do is Do.UPDATE:
            body = self._build(cfg, format_time(self.wall()))
            body["metadata"]["resourceVersion"] = observed["metadata"]["resourceVersion"]
            body["metadata"]["uid"] = uid
            self._expect(self.kube.replace_daemonset(body))
            self._start_rollout("updated")
            log.info("daemonset_updated", name=cfg.daemonset_name, uid=uid, note="rolling")
            return None
        if action.do is Do.REFRESH:
            log.info(
                "refresh_due", name=cfg.daemonset_name, interval_hours=cfg.caching_interval_hours
            )
            at = format_time(self.wall())
            template = observed["spec"]["template"]["metadata"].get("annotations") or {}
            if template.get(ds.REFRESH_ANNOTATION) == at:  # the same millisecond: still roll
                at = format_time(self.wall() + 0.001)
            self._expect(
                self.kube.patch_daemonset(
                    cfg.namespace, cfg.daemonset_name, ds.refresh_patch(at), uid=uid
                )
            )
            self._start_rollout("refreshed")
            self._refresh_begins(cfg)
            log.info("refresh_started", name=cfg.daemonset_name, uid=uid, strategy="rolling")
            self._event(
                warning=False,
                reason="Refreshing",
                action="Refresh",
                note=f"Refreshing DaemonSet {cfg.daemonset_name}: rolling, at most "
                f"{cfg.refresh_max_surge} nodes at a time, each keeping its images until the "
                "new pod holds them",
            )
            return None
        if action.do is Do.DELETE:
            # The replacement was validated before this look decided anything.
            if action.refresh:
                log.info(
                    "refresh_due",
                    name=cfg.daemonset_name,
                    interval_hours=cfg.caching_interval_hours,
                )
                self._refresh_begins(cfg)
                self._event(
                    warning=False,
                    reason="Refreshing",
                    action="Refresh",
                    note=f"Refreshing DaemonSet {cfg.daemonset_name}: recreate, deleting it and "
                    "creating it again",
                )
            self.kube.delete_daemonset(cfg.namespace, cfg.daemonset_name, uid=uid, foreground=True)
            self._deleting_uid = uid
            log.info("daemonset_deleting", name=cfg.daemonset_name, uid=uid, why=action.why)
            return None
        if action.do is Do.STAND_ASIDE:
            if self._standing_aside is None:
                other = action.other
                # Taking it back would start a fight in which every node re-pulls every image
                # over and over: the newer puller keeps the name.
                log.error(
                    "another_controller",
                    name=cfg.daemonset_name,
                    other=other,
                    note="another imagepuller manages this DaemonSet; standing by until it is "
                    "gone. Run one puller per DAEMONSET_NAME (replicas: 1).",
                )
                self._standing_aside = other
                self.current_uid = None
            return None
        if action.do is Do.IN_THE_WAY:
            meta = observed["metadata"]
            if action.other:
                message = (
                    f"DaemonSet {cfg.daemonset_name} in {cfg.namespace} (uid {uid}) is owned by "
                    f"{action.other}, so this puller leaves it alone; remove that owner's "
                    "DaemonSet or give this puller another DaemonSet name"
                )
            else:
                owners = [
                    f"{r.get('kind')}/{r.get('name')}" for r in meta.get("ownerReferences") or []
                ]
                message = (
                    f"DaemonSet {cfg.namespace}/{cfg.daemonset_name} (uid {uid}, "
                    f"labels {meta.get('labels') or {}}, owners {owners}) was not made by this "
                    "puller; remove it or set DAEMONSET_NAME to another name"
                )
            self._name_taken(message)
            raise DaemonSetInTheWay(message)
        if action.do is Do.WAIT_FOR_COLLECTION and self.conflict is None:
            log.info(
                "daemonset_of_deleted_owner",
                name=cfg.daemonset_name,
                uid=uid,
                owner=action.other,
                note="its owner was deleted; waiting for the garbage collector to remove it",
            )
        return action.requeue_after  # WAIT, WAIT_FOR_COLLECTION, NOTHING

    def _name_taken(self, message: str) -> None:
        """Another object owns the DaemonSet of our name: said once (log, Warning Event) for
        each new owner; the loop keeps logging it at each retry."""
        if message == self.conflict:
            return
        self.conflict = message
        self._event(warning=True, reason="NameConflict", action="Create", note=message)

    def _retire_earlier_names(self, current: dict[str, Any] | None) -> None:
        """Delete our DaemonSets of an earlier DAEMONSET_NAME once the current one is ready."""
        if not self._retiring or current is None or not is_ready(current):
            return
        for namespace, name in list(self._retiring):
            old = self.kube.get_daemonset(namespace, name)
            if old is not None and self._kept_by_us(old):
                self.kube.delete_daemonset(
                    namespace, name, uid=old["metadata"]["uid"], foreground=False
                )
                log.info("daemonset_retired", name=name, namespace=namespace)
            self._retiring.remove((namespace, name))

    def _kept_by_us(self, daemonset: dict[str, Any]) -> bool:
        """Ours to retire: owned by our owner (by uid), or, owning nothing, kept by this very
        puller (its identity is per resource in operator mode). Another resource that took the
        old name since is never deleted."""
        if controller_reference(daemonset) is not None:
            return self._is_ours(daemonset, self.config)  # by its controller owner's uid
        annotations = daemonset["metadata"].get("annotations") or {}
        return annotations.get(ds.CONTROLLER_ANNOTATION) == self.identity

    # --- following what the cluster reports ---------------------------------------------

    def _notice(self, observed: dict[str, Any] | None) -> None:
        """Log what happened to our DaemonSet since the last look."""
        cfg = self.config
        uid = (observed or {}).get("metadata", {}).get("uid")
        if self._deleting_uid and uid != self._deleting_uid:
            log.info("daemonset_deleted", name=cfg.daemonset_name, uid=self._deleting_uid)
            if self.current_uid == self._deleting_uid:
                self.current_uid = None
            self._deleting_uid = None
        if self.current_uid and uid != self.current_uid:
            log.warning(
                "daemonset_deleted_externally",
                name=cfg.daemonset_name,
                uid=self.current_uid,
                note="recreating it now",
            )
            self._event(
                warning=True,
                reason="DaemonSetDeleted",
                action="Delete",
                # No uid in the note: a DaemonSet deleted again and again is one Event with a
                # count, not one per deletion (the log has each uid).
                note=f"DaemonSet {cfg.daemonset_name} was deleted from outside; recreating it",
            )
            self.current_uid = None
            self._owner = None  # read the owner again: it may be gone too (an uninstall)
        if observed is None or uid != self.current_uid:
            self._rollout_started = None  # nothing of ours to follow
            return
        complete, ready, desired = rollout(observed)
        status = observed.get("status") or {}
        self.metrics.daemonset_observed(
            cfg.namespace,
            cfg.daemonset_name,
            desired=desired,
            holding=int(status.get("numberAvailable") or 0),
            images=len(ds.template_containers(observed)),
        )
        if (ready, desired) != self._progress:
            self._progress = (ready, desired)
            log.info("daemonset_progress", ready=ready, desired=desired)
        # Ready again on other counts is news too: a node that joined may get its pod ready
        # between two looks, so that no incomplete state is ever seen in between.
        if complete and (not self._ready_reported or (ready, desired) != self._ready_counts):
            self._ready_reported = True
            self._ready_counts = (ready, desired)
            started = self._rollout_started
            fields: dict[str, Any] = {"ready": ready, "desired": desired}
            if started is None or self._not_ready_reported:
                fields["late"] = True
            else:
                fields["seconds"] = round(self.clock() - started, 3)
            # The metrics first: whoever reads the log line may scrape them at once.
            if self._refresh_started_at is not None:
                self.metrics.refresh_completed(
                    cfg.namespace,
                    cfg.daemonset_name,
                    seconds=self.clock() - self._refresh_started_at,
                    at=self.wall(),
                )
                self._refresh_started_at = None
            self.metrics.failing_pods(cfg.namespace, cfg.daemonset_name, {})
            self.last_failures = []
            log.info("daemonset_ready", name=cfg.daemonset_name, **fields)
            images = len(ds.template_containers(observed))
            self._event(
                warning=False,
                reason="Ready",
                action="Pull",
                note=all_held(images, ready, desired),
            )
            if self._rollout_reason == "refreshed":
                log.info("refresh_complete", name=cfg.daemonset_name, uid=uid)
            if desired == 0:
                log.warning(
                    "no_nodes_selected",
                    name=cfg.daemonset_name,
                    note="no node matches NODE_SELECTOR/AFFINITY/TOLERATIONS; nothing is cached",
                )
            self._rollout_started = None
            self._rollout_reason = ""
        elif not complete and self._ready_reported:
            self._ready_reported = False  # a node joined or a pod failed: report it once back
        deadline = self._readiness_deadline()
        if not complete and deadline is not None and deadline <= 0 and not self._not_ready_reported:
            self._not_ready_reported = True
            self._report_not_ready(observed)
        elif not complete and deadline is not None and deadline <= 0:
            self._read_failures_again(observed)

    def _refresh_begins(self, cfg: Config) -> None:
        self._refresh_started_at = self.clock()
        self.metrics.refresh_started(cfg.namespace, cfg.daemonset_name)

    def _start_rollout(self, reason: str) -> None:
        self._rollout_started = self.clock()
        self._rollout_reason = reason
        self._not_ready_reported = False
        self._ready_reported = False
        self._progress = None

    def _readiness_deadline(self) -> float | None:
        """Seconds until READY_TIMEOUT ends for the rollout in progress, or after it until the
        failures are read again (None: no rollout is in progress)."""
        if self._rollout_started is None:
            return None
        if self._not_ready_reported:
            read_at = self._failures_read_at or self.clock()
            return read_at + FAILURES_READ_AGAIN_SECONDS - self.clock()
        return self._rollout_started + self.config.ready_timeout_seconds - self.clock()

    def _read_failures(self, last: dict[str, Any]) -> list[dict[str, str]]:
        """The failing containers now, into the metrics (by the kubelet's reason)."""
        cfg = self.config
        failures = why_not_ready(self.kube, cfg.namespace, ds.selector_labels(cfg), last)
        self._failures_read_at = self.clock()
        by_reason: dict[str, int] = {}
        nodes: dict[str, str] = {}
        for failure in failures:
            reason = str(failure.get("reason") or "Unknown")
            by_reason[reason] = by_reason.get(reason, 0) + int(failure.get("times") or 1)
            nodes.setdefault(str(failure.get("node") or "(unknown)"), reason)
        self.metrics.failing_pods(cfg.namespace, cfg.daemonset_name, by_reason, nodes)
        return failures

    def _read_failures_again(self, last: dict[str, Any]) -> None:
        """Still not ready after READY_TIMEOUT: the metrics follow the pods, and a failure not
        reported before is logged (a pull that failed only after the timeout)."""
        failures = self._read_failures(last)
        self.last_failures = failures
        for failure in failures:
            # Once per node and container for this rollout: a failing pull alternates between
            # ErrImagePull and ImagePullBackOff, which is not news.
            if _failure_key(failure) not in self._failures_logged:
                self._failures_logged.add(_failure_key(failure))
                log.warning("image_not_cached", **failure)

    def _report_not_ready(self, last: dict[str, Any]) -> None:
        cfg = self.config
        _, ready, desired = rollout(last)
        failures = self._read_failures(last)
        self.last_failures = failures
        self._failures_logged = {_failure_key(f) for f in failures}
        if self._refresh_started_at is not None:
            self.metrics.refresh_failed(cfg.namespace, cfg.daemonset_name)
        log.warning(
            "daemonset_not_ready",
            name=cfg.daemonset_name,
            ready=ready,
            desired=desired,
            timeout_seconds=cfg.ready_timeout_seconds,
            failing=len(failures),
            note="carrying on; the pods keep trying"
            + ("; nodes whose new pod cannot pull keep their old one" if ready else ""),
        )
        for failure in failures:
            log.warning("image_not_cached", **failure)
        self._event(
            warning=True,
            reason="NotReady",
            action="Pull",
            note=f"{ready}/{desired} nodes hold every image after READY_TIMEOUT "
            f"({cfg.ready_timeout_seconds:g} s); {failure_summary(failures)}",
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
        cfg = self.config
        if self.current_uid is None or not self.delete_on_shutdown:
            log.info("shutdown", deleted=False)
            return
        informer = self._informers.get(cfg.namespace)
        current = informer.get(cfg.daemonset_name) if informer else None
        owners = list((current or {}).get("metadata", {}).get("ownerReferences") or [])
        if current is not None and current["metadata"]["uid"] == self.current_uid and owners:
            log.info(
                "shutdown",
                deleted=False,
                name=cfg.daemonset_name,
                uid=self.current_uid,
                note=f"kept: owned by {owners[0].get('kind')} {owners[0].get('name')}; the next "
                "start adopts it",
            )
            return
        # The stop event is set, so this call is tried once, without retries: it must not
        # hold the pod past its termination grace period.
        try:
            deleted = self.kube.delete_daemonset(
                cfg.namespace,
                cfg.daemonset_name,
                uid=self.current_uid,
                foreground=False,
                timeout=SHUTDOWN_DELETE_TIMEOUT,
            )
        except Conflict:
            deleted = False  # a different DaemonSet now holds the name: not ours to delete
        except KubeError as err:
            log.error("shutdown_delete_failed", error=str(err))
            return
        log.info("shutdown", deleted=deleted, name=cfg.daemonset_name, uid=self.current_uid)

    # --- helpers ------------------------------------------------------------------------

    def _detect_openshift(self) -> bool:
        # A transient failure propagates: the reconcile is retried and detection with it,
        # rather than guessing the platform for the life of the process.
        try:
            openshift = self.kube.is_openshift()
        except Forbidden as err:
            log.warning("platform_unknown", error=str(err), assumed="kubernetes")
            return False
        log.info("platform", openshift=openshift)
        return openshift


def _about(owner: dict[str, Any]) -> dict[str, Any]:
    """An Event's reference to the owner (a Deployment, or a KubernetesImagePuller)."""
    return involved(owner, owner.get("apiVersion") or "apps/v1", owner.get("kind") or "Deployment")


def _is_refresh(action: Action) -> bool:
    return action.do is Do.REFRESH or (action.do is Do.DELETE and action.refresh)


def _failure_key(failure: Mapping[str, Any]) -> tuple[str, str]:
    return (str(failure.get("node")), str(failure.get("container")))


def _sooner(a: float | None, b: float | None) -> float | None:
    if a is None:
        return None if b is None else max(0.0, b)
    return max(0.0, a if b is None else min(a, b))
