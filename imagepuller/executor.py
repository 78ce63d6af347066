"""Carrying out what ``reconciler.decide`` chose for one puller's DaemonSet.

Each action is one write (or none) and what it tells: the log, an Event, the rollout it
starts. The executor also keeps the few facts only this process can know, because they are
about its own writes: which DaemonSet it created or took over (``current_uid``: a DaemonSet of
ours with no owner is recognised by it), which it is deleting itself (a recreate, not a
deletion from outside), the name it has claimed (a later change of hands means a newer puller
took it), the one it stands aside for, the earlier names to retire, and its last write until
the watch shows it. Lost on a restart, each is rebuilt from the cluster: the DaemonSet's
annotations say who keeps it and when it was refreshed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from imagepuller import daemonset as ds
from imagepuller import objects
from imagepuller.apierrors import DaemonSetInTheWay
from imagepuller.apitime import format_time
from imagepuller.config import Config
from imagepuller.desiredstate import DesiredState
from imagepuller.events import PullerEvent
from imagepuller.kube import Kube
from imagepuller.objects import DaemonSet, controller_reference, rollout
from imagepuller.ownership import Ownership, classify
from imagepuller.reconciler import Action, Desired, Do, spec_hash_of
from imagepuller.rolloutreport import RolloutReport

log = structlog.get_logger("imagepuller.controller")

# After a write, the watch-fed cache shows the old object for a moment. Until it shows ours,
# nothing is decided from it (a DaemonSet just created would look deleted); past this long the
# cache is trusted again whatever it shows (the watch may have missed it, and relists).
CATCH_UP_SECONDS = 5.0


class WriteWatch:
    """Our last write, until the watch-fed cache shows it."""

    def __init__(self, kube: Kube, identity: str, clock: Callable[[], float]):
        self.kube = kube
        self.identity = identity
        self.clock = clock
        self._expected: tuple[str, int, float] | None = None  # uid, generation, when

    def wrote(self, written: DaemonSet) -> None:
        """Remember what a write returned, so a cache that lags behind it is not acted on."""
        uid = objects.uid(written)
        if uid:
            self._expected = (uid, objects.generation(written), self.clock())

    def caught_up(
        self, cfg: Config, observed: dict[str, Any] | None
    ) -> tuple[bool, dict[str, Any] | None]:
        """Whether to decide now, and from what: the cache once it shows our last write; past
        CATCH_UP_SECONDS, the DaemonSet read from the API itself while the cache still lags
        (a watch relisting after an API server restart): a stale copy would send the same
        refresh twice, and restart a rollout."""
        if self._expected is None:
            return True, observed
        uid, generation, written_at = self._expected
        seen = observed or {}
        shows_ours = (
            objects.uid(seen) == uid
            and objects.generation(seen) >= generation
            and objects.annotation(seen, ds.CONTROLLER_ANNOTATION) == self.identity
        )
        if shows_ours:
            self._expected = None
            return True, observed
        if self.clock() - written_at <= CATCH_UP_SECONDS:
            return False, observed
        fresh = self.kube.get_daemonset(cfg.namespace, cfg.daemonset_name)
        version = objects.resource_version(observed or {})
        if (fresh is None and observed is None) or (
            version and version == objects.resource_version(fresh or {})
        ):
            self._expected = None  # the cache shows what is there now (someone else's write)
        return True, fresh


class Executor:
    def __init__(
        self,
        kube: Kube,
        identity: str,
        state: DesiredState,
        report: RolloutReport,
        event: PullerEvent,
        wall: Callable[[], float],
        writes: WriteWatch,
    ):
        self.kube = kube
        self.identity = identity
        self.state = state
        self.report = report
        self.event = event
        self.wall = wall
        self.writes = writes
        self.current_uid: str | None = None  # the DaemonSet this process keeps
        self._deleting_uid: str | None = None  # deleted by us (recreate), not from outside
        self._claimed: set[tuple[str, str]] = set()  # (namespace, name) this process took
        self._standing_aside: str | None = None  # the other puller's identity
        self.earlier = EarlierNames(kube, identity, self.is_ours)
        # Why the DaemonSet's name is not ours to use (another object owns it), while it is so.
        self.conflict: str | None = None
        # What to do for each action on a DaemonSet that is there (WAIT and NOTHING: nothing).
        self._acts: dict[Do, Callable[[Action, Desired, dict[str, Any], Config], float | None]]
        self._acts = {
            Do.CLAIM: self._claim,
            Do.UPDATE: self._update,
            Do.REFRESH: self._refresh,
            Do.DELETE: self._delete,
            Do.STAND_ASIDE: self._stand_aside,
            Do.IN_THE_WAY: self._in_the_way,
            Do.WAIT_FOR_COLLECTION: self._wait_for_collection,
        }

    def whose(self, observed: dict[str, Any], cfg: Config) -> Ownership:
        return classify(observed, cfg, owner=self.state.owner(cfg), created_uid=self.current_uid)

    def is_ours(self, observed: dict[str, Any], cfg: Config) -> bool:
        return self.whose(observed, cfg).ours

    def claimed(self, cfg: Config) -> bool:
        return (cfg.namespace, cfg.daemonset_name) in self._claimed

    def notice(self, cfg: Config, observed: dict[str, Any] | None) -> bool:
        """Log a deletion of our DaemonSet since the last look; whether ``observed`` is the
        DaemonSet this process keeps."""
        uid = objects.uid(observed or {})
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
            self.event(
                warning=True,
                reason="DaemonSetDeleted",
                action="Delete",
                # No uid in the note: a DaemonSet deleted again and again is one Event with a
                # count, not one per deletion (the log has each uid).
                note=f"DaemonSet {cfg.daemonset_name} was deleted from outside; recreating it",
            )
            self.current_uid = None
            self.state.forget_owner()  # read the owner again: it may be gone too (an uninstall)
        return observed is not None and uid == self.current_uid

    def renamed(self, previous: Config) -> None:
        """DAEMONSET_NAME (or the namespace) changed: the new name is created; the old
        DaemonSet goes once the new one is ready, so no node is without its images between."""
        if self.current_uid:
            self.earlier.retiring.append((previous.namespace, previous.daemonset_name))
            self.current_uid = None

    def perform(
        self, action: Action, desired: Desired, observed: dict[str, Any] | None, cfg: Config
    ) -> float | None:
        """Carry out ``action``; ``cfg`` is the configuration in force with the lists' images.
        The seconds until the next look (None: when something changes)."""
        if action.do is not Do.IN_THE_WAY and self.conflict is not None:
            log.info("name_conflict_over", name=cfg.daemonset_name)
            self.conflict = None
        if action.do is not Do.STAND_ASIDE and self._standing_aside:
            log.info("standby_over", name=cfg.daemonset_name, note="the name is free again")
            self._standing_aside = None
        if action.do is Do.CREATE:
            return self._create(cfg)
        assert observed is not None
        act = self._acts.get(action.do)
        if act is None:
            return action.requeue_after  # WAIT, NOTHING
        return act(action, desired, observed, cfg)

    def _create(self, cfg: Config) -> float | None:
        created = self.kube.create_daemonset(self.state.build(cfg, format_time(self.wall())))
        self.writes.wrote(created)
        self._claimed.add((cfg.namespace, cfg.daemonset_name))
        self.current_uid = objects.stored_uid(created)
        self.report.start("created")
        log.info(
            "daemonset_created",
            name=cfg.daemonset_name,
            namespace=cfg.namespace,
            uid=self.current_uid,
            images=len(cfg.images),
        )
        self.event(
            warning=False,
            reason="Created",
            action="Create",
            note=f"Created DaemonSet {cfg.daemonset_name} to cache {len(cfg.images)} images "
            "on every selected node",
        )
        return None

    def _claim(
        self, action: Action, desired: Desired, observed: dict[str, Any], cfg: Config
    ) -> float:
        uid = objects.stored_uid(observed)
        patch = {"metadata": {"annotations": {ds.CONTROLLER_ANNOTATION: self.identity}}}
        self.writes.wrote(
            self.kube.patch_daemonset(cfg.namespace, cfg.daemonset_name, patch, uid=uid)
        )
        self._claimed.add((cfg.namespace, cfg.daemonset_name))
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
        self.report.adopted(observed)
        return 0.0  # look again at once: it may need an update or a refresh

    def _update(
        self, action: Action, desired: Desired, observed: dict[str, Any], cfg: Config
    ) -> None:
        uid = objects.stored_uid(observed)
        body = self.state.build(cfg, format_time(self.wall()))
        body["metadata"]["resourceVersion"] = objects.stored_resource_version(observed)
        body["metadata"]["uid"] = uid
        self.writes.wrote(self.kube.replace_daemonset(body))
        self.report.start("updated")
        log.info("daemonset_updated", name=cfg.daemonset_name, uid=uid, note="rolling")

    def _refresh(
        self, action: Action, desired: Desired, observed: dict[str, Any], cfg: Config
    ) -> None:
        uid = objects.stored_uid(observed)
        log.info("refresh_due", name=cfg.daemonset_name, interval_hours=cfg.caching_interval_hours)
        at = format_time(self.wall())
        template = observed["spec"]["template"]
        # The same millisecond: still roll.
        if objects.annotation(template, ds.REFRESH_ANNOTATION) == at:
            at = format_time(self.wall() + 0.001)
        self.writes.wrote(
            self.kube.patch_daemonset(
                cfg.namespace, cfg.daemonset_name, ds.refresh_patch(at), uid=uid
            )
        )
        self.report.start("refreshed")
        self.report.refresh_begins(cfg)
        log.info("refresh_started", name=cfg.daemonset_name, uid=uid, strategy="rolling")
        self.event(
            warning=False,
            reason="Refreshing",
            action="Refresh",
            note=f"Refreshing DaemonSet {cfg.daemonset_name}: rolling, at most "
            f"{cfg.refresh_max_surge} nodes at a time, each keeping its images until the "
            "new pod holds them",
        )

    def _delete(
        self, action: Action, desired: Desired, observed: dict[str, Any], cfg: Config
    ) -> None:
        # The replacement was validated before this look decided anything.
        uid = objects.stored_uid(observed)
        if action.refresh:
            log.info(
                "refresh_due", name=cfg.daemonset_name, interval_hours=cfg.caching_interval_hours
            )
            self.report.refresh_begins(cfg)
            self.event(
                warning=False,
                reason="Refreshing",
                action="Refresh",
                note=f"Refreshing DaemonSet {cfg.daemonset_name}: recreate, deleting it and "
                "creating it again",
            )
        self.kube.delete_daemonset(cfg.namespace, cfg.daemonset_name, uid=uid, foreground=True)
        self._deleting_uid = uid
        log.info("daemonset_deleting", name=cfg.daemonset_name, uid=uid, why=action.why)

    def _stand_aside(
        self, action: Action, desired: Desired, observed: dict[str, Any], cfg: Config
    ) -> None:
        if self._standing_aside is not None:
            return
        # Taking it back would start a fight in which every node re-pulls every image over
        # and over: the newer puller keeps the name.
        log.error(
            "another_controller",
            name=cfg.daemonset_name,
            other=action.other,
            note="another imagepuller manages this DaemonSet; standing by until it is gone. "
            "Run one puller per DAEMONSET_NAME (replicas: 1).",
        )
        self._standing_aside = action.other
        self.current_uid = None

    def _in_the_way(
        self, action: Action, desired: Desired, observed: dict[str, Any], cfg: Config
    ) -> None:
        message = in_the_way_message(cfg, observed, action.other)
        if message != self.conflict:
            # Said once (log, Warning Event) for each new owner; the loop logs each retry.
            self.conflict = message
            self.event(warning=True, reason="NameConflict", action="Create", note=message)
        raise DaemonSetInTheWay(message)

    def _wait_for_collection(
        self, action: Action, desired: Desired, observed: dict[str, Any], cfg: Config
    ) -> float | None:
        if self.conflict is None:
            log.info(
                "daemonset_of_deleted_owner",
                name=cfg.daemonset_name,
                uid=objects.stored_uid(observed),
                owner=action.other,
                note="its owner was deleted; waiting for the garbage collector to remove it",
            )
        return action.requeue_after


class EarlierNames:
    """Our DaemonSets under an earlier DAEMONSET_NAME, deleted once the current one is ready,
    so that no node is without its images in between."""

    def __init__(
        self, kube: Kube, identity: str, is_ours: Callable[[dict[str, Any], Config], bool]
    ):
        self.kube = kube
        self.identity = identity
        self.is_ours = is_ours
        self.retiring: list[tuple[str, str]] = []  # (namespace, name)

    def retire(self, cfg: Config, current: dict[str, Any] | None) -> None:
        """Delete our DaemonSets of an earlier DAEMONSET_NAME once the current one is ready."""
        if not self.retiring or current is None or not rollout(current)[0]:
            return
        for namespace, name in list(self.retiring):
            old = self.kube.get_daemonset(namespace, name)
            if old is not None and self._kept_by_us(old, cfg):
                self.kube.delete_daemonset(
                    namespace, name, uid=objects.stored_uid(old), foreground=False
                )
                log.info("daemonset_retired", name=name, namespace=namespace)
            self.retiring.remove((namespace, name))

    def _kept_by_us(self, daemonset: dict[str, Any], cfg: Config) -> bool:
        """Ours to retire: owned by our owner (by uid), or, owning nothing, kept by this very
        puller (its identity is per resource in operator mode). Another resource that took the
        old name since is never deleted."""
        if controller_reference(daemonset) is not None:
            return self.is_ours(daemonset, cfg)  # by its controller owner's uid
        return objects.annotation(daemonset, ds.CONTROLLER_ANNOTATION) == self.identity


def in_the_way_message(cfg: Config, observed: dict[str, Any], owner: str) -> str:
    """Why the DaemonSet of our name is left alone, and what the administrator can do."""
    uid = objects.stored_uid(observed)
    if owner:
        return (
            f"DaemonSet {cfg.daemonset_name} in {cfg.namespace} (uid {uid}) is owned by "
            f"{owner}, so this puller leaves it alone; remove that owner's "
            "DaemonSet or give this puller another DaemonSet name"
        )
    owners = [f"{r.get('kind')}/{r.get('name')}" for r in objects.owner_references(observed)]
    return (
        f"DaemonSet {cfg.namespace}/{cfg.daemonset_name} (uid {uid}, "
        f"labels {dict(objects.labels_of(observed))}, owners {owners}) was not made by this "
        "puller; remove it or set DAEMONSET_NAME to another name"
    )
