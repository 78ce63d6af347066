"""One puller's image lists (IMAGES_FROM): when to read them, and the images they add.

The lists are fetched on a thread of their own (``ListReader``) and applied on the thread
that looks at the DaemonSet, the one that makes every API write (the dry run of what a
reading brings, the Events of its failures). A refresh, and the first create, wait for a new
reading, at most its timeout and a margin: a list server that hangs never holds up anything
for longer, and never a recreate or an edit at all.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import structlog

from imagepuller import daemonset as ds
from imagepuller.apierrors import ConfigRejected
from imagepuller.config import Config
from imagepuller.events import EventRecorder, about_owner, involved
from imagepuller.imagelists import merge_images
from imagepuller.listsource import ImageListSource, ListReader
from imagepuller.metrics import Metrics
from imagepuller.reconciler import Action, Do

log = structlog.get_logger("imagepuller.controller")

# A refresh (and the first create) waits for a reading of the lists at most their
# IMAGES_FROM_TIMEOUT and this much more, to hear of its end.
LISTS_HOLD_MARGIN = 1.0


@dataclasses.dataclass(frozen=True)
class ListsContext:
    """What the lists need of the puller they feed."""

    check: Callable[[Config], None]  # the API's dry run of what a configuration makes
    is_ours: Callable[[dict[str, Any], Config], bool]
    owner: Callable[[Config], dict[str, Any] | None]
    events: EventRecorder
    metrics: Metrics
    poke: Callable[[], None]  # "look again": a reading ended
    stop: threading.Event
    clock: Callable[[], float]


class PullerLists:
    def __init__(self, source: ImageListSource, context: ListsContext):
        self.source = source
        self.context = context
        # The names given to the lists' images: kept so that a list changing never renames a
        # container (after a restart, the names the running pods have).
        self._names: dict[str, str] = {}
        # The configuration with the lists' images added, and what it was made from.
        self._effective_key: tuple[Config, tuple[str, ...]] | None = None
        self._effective_last: Config | None = None
        self._waiting_for_images = False
        # The reader thread (started at the first reading); the ticket of the newest reading
        # applied; (ticket, deadline) of the reading a refresh or the first create waits for;
        # whether the first create was decided (it waits for the lists once, as a refresh does).
        self._reader: ListReader | None = None
        self._applied = 0
        self._hold: tuple[int, float] | None = None
        self._first_done = False

    def effective(self, cfg: Config) -> Config:
        """``cfg`` with the images of its lists added after IMAGES (the same object while
        neither changes, so the desired DaemonSet is not rebuilt on every look)."""
        if not cfg.images_from:
            return cfg
        references = self.source.references(cfg)
        key = self._effective_key
        if key is None or key[0] is not cfg or key[1] != references:
            merged = merge_images(cfg.images, references, keep=self._names)
            listed = merged[len(cfg.images) :]
            self._names = {image.image: image.name for image in listed}
            self._effective_key = (cfg, references)
            self._effective_last = dataclasses.replace(cfg, images=merged)
        assert self._effective_last is not None
        return self._effective_last

    @property
    def reading(self) -> bool:
        """A reading of the lists is asked, underway, or ended and not applied yet."""
        return self._reader is not None and self._reader.busy

    def seconds_to_retry(self) -> float | None:
        return self.source.seconds_to_retry()

    def look(self, cfg: Config, observed: dict[str, Any] | None) -> None:
        """Apply the reading that ended since the last look, and ask for one when due (at
        start, after IMAGES_FROM changed, or to retry a failed list)."""
        self._apply_reading(cfg, observed)
        if self.source.due(cfg):
            self._ask(cfg, observed)

    def _held_images(self, cfg: Config, observed: dict[str, Any] | None) -> dict[str, str]:
        """image -> container name of what our running DaemonSet holds beyond IMAGES."""
        if observed is None or not self.context.is_ours(observed, cfg):
            return {}
        in_images = {image.image for image in cfg.images}
        containers = ds.template_containers(observed)
        return {
            c["image"]: c["name"]
            for c in containers
            if c.get("image") and c.get("name") and c["image"] not in in_images
        }

    def _ask(self, cfg: Config, observed: dict[str, Any] | None) -> int:
        """Have the reader thread read ``cfg``'s lists; the look goes on at once with the
        lists' last good readings (after a restart, the images the DaemonSet holds). The
        ticket of the reading that will bring them."""
        held = self._held_images(cfg, observed)
        if not self._names:
            self._names = dict(held)  # a restart keeps the names the pods have
        self.source.fetching(cfg, held)
        if self._reader is None:
            self._reader = ListReader(self.source.fetch, self.context.poke, self.context.stop)
        return self._reader.ask(cfg)

    def hold(self, cfg: Config, action: Action, observed: dict[str, Any] | None) -> float | None:
        """Before each refresh, and before the first create, the lists are read again: a
        changed list becomes an update of the template, which rolls as the refresh would have.
        Seconds to hold ``action`` for that reading (None: go on). Only these actions wait,
        and at most IMAGES_FROM_TIMEOUT and a second: a list server that hangs never holds up
        a recreate or an edit."""
        first_create = action.do is Do.CREATE and not self._first_done
        if not cfg.images_from or not (first_create or action.refreshes):
            self._hold = None
            return None
        now = self.context.clock()
        if self._hold is None:
            # A reading asked already (this look, or before and still underway) is new enough.
            pending = self._reader.pending() if self._reader is not None else None
            ticket = self._ask(cfg, observed) if pending is None else pending
            timeout = cfg.images_from_timeout_seconds
            self._hold = (ticket, now + timeout + LISTS_HOLD_MARGIN)
        ticket, deadline = self._hold
        if self._applied < ticket:
            if now < deadline:
                return deadline - now
            log.warning(
                "image_lists_late",
                name=cfg.daemonset_name,
                timeout_seconds=cfg.images_from_timeout_seconds,
                note="going on with the lists' last good readings; the reading is used when "
                "it ends",
            )
        self._hold = None
        self._first_done = True
        return None

    def _apply_reading(self, cfg: Config, observed: dict[str, Any] | None) -> None:
        """Apply the reading the reader thread ended, if any."""
        finished = self._reader.take() if self._reader is not None else None
        if finished is None:
            return
        if not finished.fetched.made_for(cfg):
            self.source.dropped(finished.fetched)  # IMAGES_FROM changed meanwhile: read again
            return
        self._applied = finished.ticket
        self._first_done = True
        before = self.effective(cfg)
        snapshot = self.source.snapshot()
        outcome = self.source.apply(cfg, finished.fetched)
        failures = dict(outcome.new_failures)
        after = self.effective(cfg)
        if after is not before and after.images:
            try:
                self.context.check(after)
            except ConfigRejected as err:
                self.source.restore(snapshot)
                log.error(
                    "image_list_rejected",
                    error=str(err),
                    note="keeping the images of the lists' last good readings",
                )
                failures = dict.fromkeys(cfg.images_from, str(err))
        for _ in outcome.failing:
            self.context.metrics.image_list_failed(cfg.namespace, cfg.daemonset_name)
        for url, reason in failures.items():
            self._record_failure(cfg, observed, url, reason)

    def _record_failure(
        self, cfg: Config, observed: dict[str, Any] | None, url: str, reason: str
    ) -> None:
        """A Warning Event where `kubectl describe` shows it: on our DaemonSet, or before
        there is one on the puller's owner."""
        if observed is not None and self.context.is_ours(observed, cfg):
            about = involved(observed, "apps/v1", "DaemonSet")
        else:
            owner = self.context.owner(cfg)
            if owner is None:
                return
            about = about_owner(owner)
        self.context.events.record(
            about,
            warning=True,
            reason="ImageListUnavailable",
            action="ReadImageList",
            note=f"IMAGES_FROM list {url} not used: {reason}; the images of its last good "
            "reading stay cached",
        )

    def wait_for_images(self, cfg: Config) -> float | None:
        """No image at all yet (IMAGES empty, no list read): nothing to create."""
        if not self._waiting_for_images:
            self._waiting_for_images = True
            log.warning(
                "waiting_for_images",
                name=cfg.daemonset_name,
                failing=sorted(self.source.failing),
                note="IMAGES is empty and no IMAGES_FROM list was read yet; nothing is created "
                "until one is",
            )
        return self.source.seconds_to_retry()

    def images_found(self) -> None:
        """There are images again: a new wait for them is reported anew."""
        self._waiting_for_images = False
