"""The puller's lifecycle: create the DaemonSet, keep it, refresh it, remove it on stop.

One cycle: remove a DaemonSet of our name left from before (ours or the Go original's),
create a fresh one, wait (bounded) until every scheduled pod is ready, then watch it until
the caching interval ends (refresh) or someone deletes it (recreate at once). Errors never
end the loop: they are logged and the cycle is tried again after a growing pause. Time and
the stop event are injected so tests drive the loop without sleeping.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from imagepuller import daemonset as ds
from imagepuller import exitcodes
from imagepuller.config import Config
from imagepuller.kube import (
    Conflict,
    Forbidden,
    Invalid,
    Kube,
    KubeError,
    NamespaceTerminating,
    Stopped,
    WaitTimeout,
)
from imagepuller.pods import pull_failures

log = structlog.get_logger("imagepuller.controller")

# Pause after a failed cycle: doubles from the first value up to the second.
ERROR_BACKOFF = (2.0, 60.0)
# On shutdown the DaemonSet must be gone well within the pod's 30 s grace period.
SHUTDOWN_DELETE_TIMEOUT = (3.0, 10.0)  # connect, read (seconds)

# Dry runs are made under another name: a create dry run of an existing name is a conflict.
DRY_RUN_SUFFIX = "-dry-run"


class DaemonSetInTheWay(KubeError):
    """A DaemonSet of our name exists and belongs to something else; we leave it alone."""


class ConfigRejected(KubeError):
    """The API refuses the DaemonSet this configuration makes (found by a dry run)."""


def is_ready(daemonset: dict[str, Any]) -> bool:
    """The DaemonSet controller has seen this generation and every scheduled pod is ready."""
    status = daemonset.get("status") or {}
    generation = daemonset["metadata"].get("generation", 0)
    if status.get("observedGeneration", -1) < generation:
        return False
    return status.get("numberReady", 0) == status.get("desiredNumberScheduled", 0)


def counts(daemonset: dict[str, Any] | None) -> tuple[int, int]:
    status = (daemonset or {}).get("status") or {}
    return status.get("numberReady", 0), status.get("desiredNumberScheduled", 0)


def is_ours(existing: dict[str, Any], config: Config, *, created_uid: str | None = None) -> bool:
    """Made by this puller (this process: ``created_uid``), by the Go original, or owned by
    our Deployment. Labels and annotations can be edited by anyone; the uid and the selector
    cannot, so a DaemonSet we made stays ours whatever was done to its labels."""
    metadata = existing["metadata"]
    if created_uid and metadata.get("uid") == created_uid:
        return True
    labels = metadata.get("labels") or {}
    if labels.get("app.kubernetes.io/managed-by") == ds.MANAGED_BY:
        return True
    selector = ((existing.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    # A selector is immutable, and only our DaemonSets select our image-cache pods by name.
    if selector == ds.selector_labels(config):
        return True
    # The Go original put its label only on the selector and the pod template.
    if any(
        all(found.get(k) == v for k, v in ds.LEGACY_LABELS.items()) for found in (labels, selector)
    ):
        return True
    return any(
        ref.get("kind") == "Deployment" and ref.get("name") == config.deployment_name
        for ref in existing["metadata"].get("ownerReferences") or []
    )


class Controller:
    def __init__(
        self,
        config: Config,
        kube: Kube,
        *,
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
        identity: str = "",
    ):
        self.config = config
        self.kube = kube
        self.stop = stop
        # Names this controller in the DaemonSets it makes (host name and pid by default).
        self.identity = identity
        self.clock = clock
        self.openshift: bool | None = None
        self.current_uid: str | None = None
        # When the current DaemonSet is due for a refresh (clock time); None: make one now.
        self.refresh_at: float | None = None
        self._progress: tuple[int, int] | None = None
        self._ready_uid: str | None = None  # the DaemonSet last reported ready
        self._validated = False  # the API accepted a dry run of our DaemonSet
        self._created_before = False  # leftovers are replaced only before our first create
        self._shutdown_lock = threading.Lock()
        self._shut_down = False

    # --- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Run until the stop event is set; then delete the DaemonSet. Returns the exit code."""
        backoff = ERROR_BACKOFF[0]
        code = exitcodes.OK
        while not self.stop.is_set():
            try:
                self.run_cycle()
                backoff = ERROR_BACKOFF[0]
            except Stopped:
                break
            except ConfigRejected as err:
                # Deterministic, so retrying cannot help; what already runs was not touched.
                log.error("config_rejected", error=str(err))
                code = exitcodes.CONFIG
                break
            except NamespaceTerminating as err:
                # Not a permission: even a cluster admin gets this 403. Tried again in case the
                # namespace is recreated (an uninstall and reinstall).
                log.error("namespace_terminating", namespace=self.config.namespace, error=str(err))
            except Forbidden as err:
                log.error("api_forbidden", missing_permission=err.permission, error=str(err))
            except Conflict as err:
                # Someone else wrote the DaemonSet between our read and our write: most often
                # another puller taking the name over, or its deletion finishing. Not an API
                # failure; the next cycle reads it again and decides.
                log.warning(
                    "daemonset_changed_meanwhile",
                    name=self.config.daemonset_name,
                    detail=str(err),
                    note="the DaemonSet changed between our read and our write; looking again",
                )
            except DaemonSetInTheWay as err:
                log.error("daemonset_in_the_way", error=str(err))
            except KubeError as err:
                log.error("api_error", error=str(err), status=err.status)
            except Exception:  # noqa: BLE001 - one bad cycle must not end the puller
                log.exception("cycle_failed")
            else:
                continue
            log.info("cycle_retry", wait_seconds=backoff)
            self.stop.wait(backoff)
            backoff = min(backoff * 2, ERROR_BACKOFF[1])
        self.shutdown()
        return code

    def run_cycle(self) -> None:
        """Create a fresh DaemonSet and wait for it, then keep it until the next refresh.

        After a failure while keeping it, the next cycle keeps the same DaemonSet if it is
        still there: an API hiccup must not cost every node a re-pull.
        """
        interval = self.config.caching_interval_seconds
        refresh_at = self.refresh_at
        if refresh_at is None or not self._can_keep_current():
            created = self.recreate()
            # Kept from now on, even if waiting for it fails: a retry must not re-pull.
            self.refresh_at = self.clock() + interval
            self.wait_until_ready(created)
            refresh_at = self.refresh_at = self.clock() + interval
        self.keep_until(refresh_at)
        self.refresh_at = None  # refresh due, or deleted from outside: recreate next cycle

    def _can_keep_current(self) -> bool:
        if self.refresh_at is None or self.clock() >= self.refresh_at:
            return False
        cfg = self.config
        return self._is_current(self.kube.get_daemonset(cfg.namespace, cfg.daemonset_name))

    def _is_current(self, daemonset: dict[str, Any] | None) -> bool:
        """The DaemonSet we made and keep: still there, same uid, not being deleted."""
        return (
            daemonset is not None
            and daemonset["metadata"]["uid"] == self.current_uid
            and not daemonset["metadata"].get("deletionTimestamp")
        )

    # --- steps --------------------------------------------------------------------------

    def recreate(self) -> dict[str, Any]:
        """Remove any previous DaemonSet of our name, then create a new one."""
        cfg = self.config
        if self.openshift is None:
            self.openshift = self._detect_openshift()
        owner = self.kube.get_deployment(cfg.namespace, cfg.deployment_name)
        if owner is None:
            log.info(
                "owner_not_found",
                deployment=cfg.deployment_name,
                namespace=cfg.namespace,
                note="creating the DaemonSet without an owner reference",
            )
        body = ds.build_daemonset(
            cfg, owner=owner, openshift=self.openshift, controller_id=self.identity or None
        )
        if not self._validated:
            self.validate(body)
        self.remove_previous()
        try:
            created = self.kube.create_daemonset(body)
        except Conflict:
            # Someone created one between our delete and create. Another puller racing us for
            # the name: let it have it (the alternative is an endless delete/create fight).
            # Anything else propagates and the next cycle sorts it out.
            other = self._other_controller(
                self.kube.get_daemonset(cfg.namespace, cfg.daemonset_name)
            )
            if not other:
                raise
            self._yield_to(other)
            created = self.kube.create_daemonset(body)
        self._created_before = True
        self.current_uid = created["metadata"]["uid"]
        self._progress = None
        log.info(
            "daemonset_created",
            name=cfg.daemonset_name,
            namespace=cfg.namespace,
            uid=self.current_uid,
            images=len(cfg.images),
        )
        return created

    def validate(self, body: dict[str, Any]) -> None:
        """Have the API validate and admit the DaemonSet before anything running is touched."""
        probe = copy.deepcopy(body)
        name = probe["metadata"]["name"]
        probe["metadata"]["name"] = name[: 63 - len(DRY_RUN_SUFFIX)] + DRY_RUN_SUFFIX
        try:
            self.kube.create_daemonset(probe, dry_run=True)
        except Invalid as err:
            raise ConfigRejected(
                f"the API rejects the DaemonSet this configuration makes, so nothing was "
                f"changed; fix the ConfigMap and restart: {err}"
            ) from None
        except Conflict:
            pass  # something already holds the probe's name; the real create will tell
        self._validated = True

    def remove_previous(self) -> None:
        cfg = self.config
        existing = self.kube.get_daemonset(cfg.namespace, cfg.daemonset_name)
        if existing is None:
            return
        other = self._other_controller(existing)
        if other and self._created_before:
            # Met after our own start, so not a leftover of an earlier run: a live puller.
            self._yield_to(other)
            return
        if not is_ours(existing, cfg, created_uid=self.current_uid):
            meta = existing["metadata"]
            owners = [f"{r.get('kind')}/{r.get('name')}" for r in meta.get("ownerReferences") or []]
            raise DaemonSetInTheWay(
                f"DaemonSet {cfg.namespace}/{cfg.daemonset_name} (uid {meta.get('uid')}, "
                f"labels {meta.get('labels') or {}}, owners "
                f"{owners}) "
                "was not made by this puller; remove it or set DAEMONSET_NAME to another name"
            )
        uid = existing["metadata"]["uid"]
        self.kube.delete_daemonset(cfg.namespace, cfg.daemonset_name, uid=uid, foreground=True)
        log.info("daemonset_deleting", name=cfg.daemonset_name, uid=uid)
        deadline = self.clock() + cfg.ready_timeout_seconds
        try:
            self.kube.wait_for_daemonset(
                cfg.namespace,
                cfg.daemonset_name,
                lambda d: d is None or d["metadata"]["uid"] != uid,
                deadline,
            )
        except WaitTimeout:
            raise KubeError(
                f"DaemonSet {cfg.namespace}/{cfg.daemonset_name} was not gone after "
                f"READY_TIMEOUT ({cfg.ready_timeout_seconds:g}s); its pods may be stuck terminating"
            ) from None
        log.info("daemonset_deleted", name=cfg.daemonset_name, uid=uid)

    def wait_until_ready(self, created: dict[str, Any]) -> None:
        """Wait (bounded by READY_TIMEOUT) for every pod; on timeout report why, and go on."""
        cfg = self.config
        uid = created["metadata"]["uid"]
        started = self.clock()
        try:
            current = self.kube.wait_for_daemonset(
                cfg.namespace,
                cfg.daemonset_name,
                lambda d: d is None or d["metadata"]["uid"] != uid or is_ready(d),
                started + cfg.ready_timeout_seconds,
                on_change=self._log_progress,
            )
        except WaitTimeout as timeout:
            self._report_not_ready(timeout.last)
            return
        if current is None or current["metadata"]["uid"] != uid:
            log.warning("daemonset_replaced_while_waiting", name=cfg.daemonset_name)
            return
        ready, desired = counts(current)
        self._ready_uid = uid
        log.info(
            "daemonset_ready",
            name=cfg.daemonset_name,
            ready=ready,
            desired=desired,
            seconds=round(self.clock() - started, 3),
        )
        if desired == 0:
            log.warning(
                "no_nodes_selected",
                name=cfg.daemonset_name,
                note="no node matches NODE_SELECTOR/AFFINITY/TOLERATIONS; nothing is cached",
            )

    def keep_until(self, refresh_at: float) -> None:
        """Watch the DaemonSet until ``refresh_at``; return early if someone deleted it."""
        cfg = self.config
        uid = self.current_uid
        try:
            current = self.kube.wait_for_daemonset(
                cfg.namespace,
                cfg.daemonset_name,
                lambda d: not self._is_current(d),
                refresh_at,
                on_change=self._follow_readiness,
            )
        except WaitTimeout:
            log.info(
                "refresh_due", name=cfg.daemonset_name, interval_hours=cfg.caching_interval_hours
            )
            return
        other = self._other_controller(current)
        if other:
            self._yield_to(other)
            return
        log.warning(
            "daemonset_deleted_externally",
            name=cfg.daemonset_name,
            uid=uid,
            note="recreating it now",
        )

    def _yield_to(self, other: str) -> None:
        # Another puller replaced ours. Replacing theirs back would start a fight in which
        # every node re-pulls every image over and over: the newer one keeps the name.
        log.error(
            "another_controller",
            name=self.config.daemonset_name,
            other=other,
            note="another imagepuller manages this DaemonSet; standing by until it is gone. "
            "Run one puller per DAEMONSET_NAME (replicas: 1).",
        )
        self.current_uid = None
        self.stand_by()

    def _other_controller(self, current: dict[str, Any] | None) -> str | None:
        if current is None or current["metadata"].get("deletionTimestamp"):
            return None
        annotations = current["metadata"].get("annotations") or {}
        other = annotations.get(ds.CONTROLLER_ANNOTATION)
        return other if other and other != self.identity else None

    def stand_by(self) -> None:
        """Wait until the DaemonSet of our name is gone (its controller stopped), however long."""
        cfg = self.config
        while True:
            try:
                self.kube.wait_for_daemonset(
                    cfg.namespace,
                    cfg.daemonset_name,
                    lambda d: d is None,
                    self.clock() + cfg.caching_interval_seconds,
                )
            except WaitTimeout:
                continue
            log.info("standby_over", name=cfg.daemonset_name, note="the name is free again")
            return

    def shutdown(self) -> None:
        """Delete our DaemonSet (background: it is gone at once, the GC removes its pods).

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
        if self.current_uid is None:
            log.info("shutdown", deleted=False)
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
        # A transient failure propagates: the cycle is retried and detection with it, rather
        # than guessing the platform for the life of the process.
        try:
            openshift = self.kube.is_openshift()
        except Forbidden as err:
            log.warning("platform_unknown", error=str(err), assumed="kubernetes")
            return False
        log.info("platform", openshift=openshift)
        return openshift

    def _log_progress(self, current: dict[str, Any] | None) -> None:
        if current is None or current["metadata"]["uid"] != self.current_uid:
            return
        progress = counts(current)
        if progress != self._progress:
            self._progress = progress
            log.info("daemonset_progress", ready=progress[0], desired=progress[1])

    def _follow_readiness(self, current: dict[str, Any] | None) -> None:
        """Between refreshes: log progress (a node joined, a pod failed) and a late ready."""
        if current is None or current["metadata"]["uid"] != self.current_uid:
            return
        self._log_progress(current)
        ready_now = is_ready(current)
        if ready_now and self._ready_uid != self.current_uid:
            ready, desired = counts(current)
            self._ready_uid = self.current_uid
            log.info(
                "daemonset_ready",
                name=self.config.daemonset_name,
                ready=ready,
                desired=desired,
                late=True,
            )
        elif not ready_now and self._ready_uid == self.current_uid:
            self._ready_uid = None  # report it again once every pod is back

    def _creation_failures(self) -> list[dict[str, str]]:
        selector = f"involvedObject.uid={self.current_uid},reason=FailedCreate"
        try:
            events = self.kube.list_events(self.config.namespace, selector)
        except KubeError as err:
            log.warning("events_unavailable", error=str(err))
            return []
        messages: dict[str, int] = {}
        for event in events:
            message = event.get("message") or ""
            messages[message] = messages.get(message, 0) + int(event.get("count") or 1)
        return [
            {
                "node": "",
                "pod": "(not created)",
                "container": "",
                "image": "",
                "reason": "FailedCreate",
                "message": message,
                "times": str(times),
            }
            for message, times in messages.items()
        ]

    def _report_not_ready(self, last: dict[str, Any] | None) -> None:
        cfg = self.config
        ready, desired = counts(last)
        selector = ",".join(f"{k}={v}" for k, v in ds.selector_labels(cfg).items())
        try:
            pods = self.kube.list_pods(cfg.namespace, selector)
        except KubeError as err:
            pods = []
            log.warning("pod_status_unavailable", error=str(err))
        failures = pull_failures(pods)
        if len(pods) < desired:
            # Pods that could not even be created (a quota, an admission rule) leave no status
            # to read; the DaemonSet controller says why in FailedCreate events.
            failures.extend(self._creation_failures())
        log.warning(
            "daemonset_not_ready",
            name=cfg.daemonset_name,
            ready=ready,
            desired=desired,
            timeout_seconds=cfg.ready_timeout_seconds,
            failing=len(failures),
            note="carrying on; the pods keep trying",
        )
        for failure in failures:
            log.warning("image_not_cached", **failure)
