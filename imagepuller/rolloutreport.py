"""Following one puller's rollout and saying how it goes: logs, Events and metrics.

Every look hands in what it observed of our DaemonSet; the report says what is news: the
progress counts, ready (once per rollout, or again on other counts: a node joined), not ready
after READY_TIMEOUT with the failing pods (read once, then again every
FAILURES_READ_AGAIN_SECONDS, since a pull that fails later changes no DaemonSet count). What
it keeps in memory only decides what is news; what the pods are is read from the cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from imagepuller import daemonset as ds
from imagepuller import objects
from imagepuller.config import Config
from imagepuller.events import PullerEvent
from imagepuller.failures import Failure, failure_summary
from imagepuller.kube import Kube
from imagepuller.metrics import Metrics
from imagepuller.objects import rollout
from imagepuller.status import all_held, why_not_ready

log = structlog.get_logger("imagepuller.controller")

# After READY_TIMEOUT, while the rollout is still incomplete, how often the failing pods are
# read again for the metrics and the log (one pod list each time).
FAILURES_READ_AGAIN_SECONDS = 15.0


class RolloutReport:
    def __init__(
        self,
        kube: Kube,
        metrics: Metrics,
        event: PullerEvent,
        clock: Callable[[], float],
        wall: Callable[[], float],
    ):
        self.kube = kube
        self.metrics = metrics
        self.event = event
        self.clock = clock
        self.wall = wall
        # The rollout followed: when it began (clock; None: none is followed) and why.
        self._started: float | None = None
        self._reason = ""
        self._refresh_started: float | None = None  # clock time of the refresh underway
        # What was said of it: not ready (after READY_TIMEOUT), ready (and on which counts),
        # the last progress counts, the failures logged (node, container).
        self._not_ready_reported = False
        self._ready_reported = False
        self._ready_counts: tuple[int, int] | None = None
        self._progress: tuple[int, int] | None = None
        self._failures_logged: set[tuple[str, str]] = set()
        self._failures_read_at: float | None = None
        # The failing containers last read (operator mode's status shows them).
        self.failures: list[Failure] = []

    def start(self, reason: str) -> None:
        """A rollout of ours begins (created, adopted, updated, refreshed)."""
        self._started = self.clock()
        self._reason = reason
        self._not_ready_reported = False
        self._ready_reported = False
        self._progress = None

    def adopted(self, observed: dict[str, Any]) -> None:
        """A DaemonSet taken over: already holding everywhere is not news; else follow it."""
        complete, ready, desired = rollout(observed)
        if complete:
            self._ready_reported = True
            self._progress = self._ready_counts = (ready, desired)
        else:
            self.start("adopted")

    def refresh_begins(self, cfg: Config) -> None:
        self._refresh_started = self.clock()
        self.metrics.refresh_started(cfg.namespace, cfg.daemonset_name)

    def stop_following(self) -> None:
        """Nothing of ours to follow (no DaemonSet, or not the one we keep)."""
        self._started = None

    def deadline(self, cfg: Config) -> float | None:
        """Seconds until READY_TIMEOUT ends for the rollout in progress, or after it until the
        failures are read again (None: no rollout is in progress)."""
        if self._started is None:
            return None
        if self._not_ready_reported:
            read_at = self._failures_read_at or self.clock()
            return read_at + FAILURES_READ_AGAIN_SECONDS - self.clock()
        return self._started + cfg.ready_timeout_seconds - self.clock()

    def notice(self, cfg: Config, observed: dict[str, Any]) -> None:
        """Our DaemonSet as the look saw it: report what is news."""
        complete, ready, desired = rollout(observed)
        status = objects.daemonset_status(observed)
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
            self._report_ready(cfg, observed, ready, desired)
        elif not complete and self._ready_reported:
            self._ready_reported = False  # a node joined or a pod failed: report it once back
        deadline = self.deadline(cfg)
        if complete or deadline is None or deadline > 0:
            return
        if not self._not_ready_reported:
            self._not_ready_reported = True
            self._report_not_ready(cfg, observed)
        else:
            self._read_failures_again(cfg, observed)

    def _report_ready(
        self, cfg: Config, observed: dict[str, Any], ready: int, desired: int
    ) -> None:
        self._ready_reported = True
        self._ready_counts = (ready, desired)
        fields: dict[str, Any] = {"ready": ready, "desired": desired}
        if self._started is None or self._not_ready_reported:
            fields["late"] = True
        else:
            fields["seconds"] = round(self.clock() - self._started, 3)
        # The metrics first: whoever reads the log line may scrape them at once.
        if self._refresh_started is not None:
            self.metrics.refresh_completed(
                cfg.namespace,
                cfg.daemonset_name,
                seconds=self.clock() - self._refresh_started,
                at=self.wall(),
            )
            self._refresh_started = None
        self.metrics.failing_pods(cfg.namespace, cfg.daemonset_name, {})
        self.failures = []
        log.info("daemonset_ready", name=cfg.daemonset_name, **fields)
        images = len(ds.template_containers(observed))
        self.event(
            warning=False, reason="Ready", action="Pull", note=all_held(images, ready, desired)
        )
        if self._reason == "refreshed":
            log.info("refresh_complete", name=cfg.daemonset_name, uid=objects.uid(observed))
        if desired == 0:
            log.warning(
                "no_nodes_selected",
                name=cfg.daemonset_name,
                note="no node matches NODE_SELECTOR/AFFINITY/TOLERATIONS; nothing is cached",
            )
        self._started = None
        self._reason = ""

    def _read_failures(self, cfg: Config, last: dict[str, Any]) -> list[Failure]:
        """The failing containers now, into the metrics (by the kubelet's reason)."""
        failures = why_not_ready(self.kube, cfg.namespace, ds.selector_labels(cfg), last)
        self._failures_read_at = self.clock()
        by_reason: dict[str, int] = {}
        nodes: dict[str, str] = {}
        for failure in failures:
            reason = failure.reason or "Unknown"
            by_reason[reason] = by_reason.get(reason, 0) + failure.count
            nodes.setdefault(failure.node or "(unknown)", reason)
        self.metrics.failing_pods(cfg.namespace, cfg.daemonset_name, by_reason, nodes)
        self.failures = list(failures)
        return self.failures

    def _read_failures_again(self, cfg: Config, last: dict[str, Any]) -> None:
        """Still not ready after READY_TIMEOUT: the metrics follow the pods, and a failure not
        reported before is logged (a pull that failed only after the timeout)."""
        for failure in self._read_failures(cfg, last):
            # Once per node and container for this rollout: a failing pull alternates between
            # ErrImagePull and ImagePullBackOff, which is not news.
            if _failure_key(failure) not in self._failures_logged:
                self._failures_logged.add(_failure_key(failure))
                log.warning("image_not_cached", **failure.log_fields())

    def _report_not_ready(self, cfg: Config, last: dict[str, Any]) -> None:
        _, ready, desired = rollout(last)
        failures = self._read_failures(cfg, last)
        self._failures_logged = {_failure_key(f) for f in failures}
        if self._refresh_started is not None:
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
            log.warning("image_not_cached", **failure.log_fields())
        self.event(
            warning=True,
            reason="NotReady",
            action="Pull",
            note=f"{ready}/{desired} nodes hold every image after READY_TIMEOUT "
            f"({cfg.ready_timeout_seconds:g} s); {failure_summary(failures)}",
        )


def _failure_key(failure: Failure) -> tuple[str, str]:
    return (failure.node, failure.container)
