"""The images IMAGES_FROM adds: each list's last good reading, read again when asked.

The controller asks at start, before each refresh, after IMAGES_FROM changes, and (while a
list fails) every ``RETRY_SECONDS``. A list that cannot be read, or that is over a limit, keeps
its last good reading: a registry being down never empties a node's cache. A list that shrinks
drops images only once it was read whole. After a restart nothing has been read yet; until a
list is read, the images the running DaemonSet holds beyond IMAGES (``held``) are kept, so a
restart while the registry is down re-pulls nothing and drops nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import structlog

from imagepuller import imagelists
from imagepuller.config import Config

log = structlog.get_logger("imagepuller.lists")

# While a list fails it is tried again this often (besides before each refresh).
RETRY_SECONDS = 60.0

Reader = Callable[..., imagelists.ImageList]

# While lists are being read (each bounded by IMAGES_FROM_TIMEOUT, up to 300 s), the liveness
# check is told this often that the look waits on them and is not stuck.
PROGRESS_SECONDS = 5.0


def _settings(cfg: Config) -> tuple[object, ...]:
    return (
        cfg.images_from,
        cfg.images_from_ca_bundle,
        cfg.images_from_timeout_seconds,
        cfg.images_from_max_images,
        cfg.images_from_max_bytes,
        cfg.images_from_hosts,
    )


@dataclass
class ReadOutcome:
    """What one reading of the lists found: the failures that began (or changed reason) are
    what an Event should say."""

    new_failures: dict[str, str] = field(default_factory=dict)
    failing: dict[str, str] = field(default_factory=dict)


class ImageListSource:
    def __init__(
        self,
        read: Reader = imagelists.read_source,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._read = read
        self.clock = clock
        self._good: dict[str, tuple[str, ...]] = {}  # url -> references of its last good reading
        self._problems_seen: dict[str, tuple[str, ...]] = {}  # skipped lines already logged
        self.failing: dict[str, str] = {}  # url -> why its last reading failed
        self._read_with: tuple[object, ...] | None = None
        self._retry_at: float | None = None
        # The list images the running DaemonSet held when a list had not been read yet.
        self._held: tuple[str, ...] = ()
        # Called after each list is read or fails, and every PROGRESS_SECONDS while lists are
        # read: the liveness check's "not stuck".
        self.on_progress: Callable[[], None] | None = None

    def due(self, cfg: Config) -> bool:
        if not cfg.images_from:
            return False
        if _settings(cfg) != self._read_with:
            return True
        return self._retry_at is not None and self.clock() >= self._retry_at

    def seconds_to_retry(self) -> float | None:
        return None if self._retry_at is None else max(0.0, self._retry_at - self.clock())

    def references(self, cfg: Config) -> tuple[str, ...]:
        """Every reference to hold from the lists of ``cfg`` (unsorted, unique)."""
        found: dict[str, None] = {}
        for url in cfg.images_from:
            found.update(dict.fromkeys(self._good.get(url, ())))
        if any(url not in self._good for url in cfg.images_from):
            found.update(dict.fromkeys(self._held))
        return tuple(found)

    def snapshot(self) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
        return dict(self._good), self._held

    def restore(self, snapshot: tuple[dict[str, tuple[str, ...]], tuple[str, ...]]) -> None:
        self._good, self._held = dict(snapshot[0]), snapshot[1]

    def _read_all(self, cfg: Config) -> dict[str, Future[imagelists.ImageList]]:
        """Every list of ``cfg`` read side by side (IMAGES_FROM names at most 10): the look
        waits for the slowest list, one IMAGES_FROM_TIMEOUT, not for the sum of them."""
        with ThreadPoolExecutor(
            max_workers=len(cfg.images_from), thread_name_prefix="image-list"
        ) as pool:
            reads = {
                url: pool.submit(
                    self._read,
                    url,
                    timeout=cfg.images_from_timeout_seconds,
                    max_bytes=cfg.images_from_max_bytes,
                    ca_bundle=cfg.images_from_ca_bundle,
                    allowed_hosts=cfg.images_from_hosts,
                )
                for url in cfg.images_from
            }
            pending: set[Future[imagelists.ImageList]] = set(reads.values())
            while pending:
                _, pending = wait(pending, timeout=PROGRESS_SECONDS, return_when=FIRST_COMPLETED)
                if self.on_progress is not None:
                    self.on_progress()
        return reads

    def read(self, cfg: Config, held: Iterable[str] = ()) -> ReadOutcome:
        """Read every list of ``cfg`` now. ``held``: the references the running DaemonSet holds
        beyond IMAGES, kept while a list has never been read."""
        if any(url not in self._good for url in cfg.images_from) and not self._held:
            self._held = tuple(held)
        readings: dict[str, tuple[str, ...]] = {}
        failures: dict[str, str] = {}
        for url, read in self._read_all(cfg).items():
            try:
                listed = read.result()
            except imagelists.ListUnavailable as err:
                failures[url] = err.reason
                continue
            readings[url] = listed.references
            if listed.problems != self._problems_seen.get(url):
                self._problems_seen[url] = listed.problems
                for problem in listed.problems:
                    log.warning("image_list_entry_skipped", url=url, problem=problem)
        candidate = {url: refs for url, refs in self._good.items() if url in cfg.images_from}
        candidate.update(readings)
        in_images = {image.image for image in cfg.images}
        count = len({ref for refs in candidate.values() for ref in refs} - in_images)
        too_many = imagelists.too_many(count, cfg.images_from_max_images)
        if too_many:
            failures.update(dict.fromkeys(readings, too_many))
        else:
            for url, refs in readings.items():
                if self._good.get(url) != refs or url in self.failing:
                    log.info("image_list_read", url=url, images=len(refs))
            self._good = candidate
        if all(url in self._good for url in cfg.images_from):
            self._held = ()  # every list read: what they say is all that is held
        outcome = ReadOutcome(failing=failures)
        for url, reason in failures.items():
            kept = len(self._good[url]) if url in self._good else len(self._held)
            log.warning(
                "image_list_failed",
                url=url,
                reason=reason,
                kept_images=kept,
                note="keeping the images of its last good reading; tried again in "
                f"{RETRY_SECONDS:g} s and before each refresh",
            )
            if self.failing.get(url) != reason:
                outcome.new_failures[url] = reason
        self.failing = failures
        self._read_with = _settings(cfg)
        self._retry_at = self.clock() + RETRY_SECONDS if failures else None
        return outcome
