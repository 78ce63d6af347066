"""The images IMAGES_FROM adds: each list's last good reading, read again when asked.

The controller asks at start, before each refresh, after IMAGES_FROM changes, and (while a
list fails) every ``RETRY_SECONDS``. A list that cannot be read, or that is over a limit, keeps
its last good reading: a registry being down never empties a node's cache. A list that shrinks
drops images only once it was read whole. After a restart nothing has been read yet; until a
list is read, the images the running DaemonSet holds beyond IMAGES (``held``) are kept, so a
restart while the registry is down re-pulls nothing and drops nothing.

A reading has two halves: ``fetch`` (the network, bounded by IMAGES_FROM_TIMEOUT, up to 300 s)
touches no state and runs on any thread; ``apply`` (what the readings mean) runs where the
readings are used. The controller fetches on a ``ListReader`` thread, so that a slow list server
never holds up what keeps the DaemonSet; ``read`` does both at once (the `images` command).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from imagepuller import imagelists
from imagepuller.config import Config

log = structlog.get_logger("imagepuller.lists")

# While a list fails it is tried again this often (besides before each refresh).
RETRY_SECONDS = 60.0

Reader = Callable[..., imagelists.ImageList]
Settings = tuple[object, ...]


def _settings(cfg: Config) -> Settings:
    return (
        cfg.images_from,
        cfg.images_from_ca_bundle,
        cfg.images_from_timeout_seconds,
        cfg.images_from_max_images,
        cfg.images_from_max_bytes,
        cfg.images_from_hosts,
    )


def same_lists(a: Config, b: Config) -> bool:
    """Whether a reading made for ``a`` is a reading of ``b``'s lists."""
    return _settings(a) == _settings(b)


@dataclass(frozen=True)
class Fetched:
    """What one fetch of every list of a configuration brought: url -> the list as read, or
    why it could not be."""

    settings: Settings
    lists: dict[str, imagelists.ImageList | imagelists.ListUnavailable]

    def made_for(self, cfg: Config) -> bool:
        return self.settings == _settings(cfg)


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
        # The settings of a reading underway elsewhere (``fetching``) and not applied yet.
        self._underway: Settings | None = None

    def due(self, cfg: Config) -> bool:
        if not cfg.images_from:
            return False
        settings = _settings(cfg)
        if self._underway is not None:
            return settings != self._underway  # read already, unless the settings changed
        if settings != self._read_with:
            return True
        return self._retry_at is not None and self.clock() >= self._retry_at

    def seconds_to_retry(self) -> float | None:
        """Seconds until a failing list is tried again (None: nothing to retry, or a reading
        is underway: its end wakes the controller)."""
        if self._retry_at is None or self._underway is not None:
            return None
        return max(0.0, self._retry_at - self.clock())

    def fetching(self, cfg: Config, held: Iterable[str] = ()) -> None:
        """A reading of ``cfg``'s lists is underway on another thread: not due again (unless
        the settings change) until it is applied or dropped. ``held``: the references the
        running DaemonSet holds beyond IMAGES, kept while a list has never been read."""
        self._underway = _settings(cfg)
        self.keep_held(cfg, held)

    def dropped(self, fetched: Fetched) -> None:
        """A reading made for settings no longer in force is not used."""
        if self._underway == fetched.settings:
            self._underway = None

    def keep_held(self, cfg: Config, held: Iterable[str]) -> None:
        """Until every list of ``cfg`` is read, what the lists brought so far stays: the last
        good readings (IMAGES_FROM changed), or after a restart ``held``."""
        if any(url not in self._good for url in cfg.images_from) and not self._held:
            brought = {ref: None for refs in self._good.values() for ref in refs}
            self._held = tuple(brought) if brought else tuple(held)

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

    def fetch(self, cfg: Config) -> Fetched:
        """Every list of ``cfg`` fetched side by side (IMAGES_FROM names at most 10): one
        IMAGES_FROM_TIMEOUT for the slowest, not the sum of them. Reads and writes no state of
        this source, so it runs on any thread."""
        # Daemon threads, not an executor's: the interpreter joins those at exit, so a list
        # server that hangs would hold a stopping puller up to a whole timeout.
        lists: dict[str, imagelists.ImageList | imagelists.ListUnavailable] = {}

        def read(url: str) -> None:
            lists[url] = self._fetch_one(cfg, url)  # bounded: each reading has its deadline

        threads = [
            threading.Thread(target=read, args=(url,), name="image-list", daemon=True)
            for url in cfg.images_from
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return Fetched(_settings(cfg), {url: lists[url] for url in cfg.images_from})

    def _fetch_one(
        self, cfg: Config, url: str
    ) -> imagelists.ImageList | imagelists.ListUnavailable:
        try:
            return self._read(
                url,
                timeout=cfg.images_from_timeout_seconds,
                max_bytes=cfg.images_from_max_bytes,
                ca_bundle=cfg.images_from_ca_bundle,
                allowed_hosts=cfg.images_from_hosts,
            )
        except imagelists.ListUnavailable as err:
            return err
        except Exception as err:  # noqa: BLE001 - a bug in one reading must not stop the others
            log.exception("image_list_read_crashed", url=url)
            return imagelists.ListUnavailable(url, f"reading failed ({type(err).__name__})")

    def read(self, cfg: Config, held: Iterable[str] = ()) -> ReadOutcome:
        """Read every list of ``cfg`` now. ``held``: the references the running DaemonSet holds
        beyond IMAGES, kept while a list has never been read."""
        self.keep_held(cfg, held)
        return self.apply(cfg, self.fetch(cfg))

    def apply(self, cfg: Config, fetched: Fetched) -> ReadOutcome:
        """Take in a fetch of ``cfg``'s lists (made with its settings): the lists read keep
        their new reading, unless together they are over IMAGES_FROM_MAX_IMAGES."""
        assert fetched.made_for(cfg), "a fetch is applied to the settings it was made with"
        self._underway = None
        readings: dict[str, tuple[str, ...]] = {}
        failures: dict[str, str] = {}
        for url, listed in fetched.lists.items():
            if isinstance(listed, imagelists.ListUnavailable):
                failures[url] = listed.reason
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


@dataclass(frozen=True)
class Finished:
    """A reading the reader thread ended: ``ticket`` as ``ListReader.ask`` returned it."""

    ticket: int
    fetched: Fetched


class ListReader:
    """Fetches the lists on a thread of its own, one fetch at a time, so that no look of the
    controller waits for a list server (each fetch may last IMAGES_FROM_TIMEOUT, up to 300 s).

    ``ask`` returns at once with a ticket; when the fetch ends, it is kept for ``take`` and
    ``done`` is called (the controller's wake-up), and the controller applies it on its own
    thread, where every API write is made. The thread is a daemon and started per burst of
    asks: it ends when nothing more is asked, and once ``stop`` is set nothing it fetched is
    handed over (a fetch underway is left to end on its own, within its timeout).
    """

    def __init__(
        self,
        fetch: Callable[[Config], Fetched],
        done: Callable[[], None],
        stop: threading.Event,
    ):
        self._fetch = fetch
        self._done = done
        self._stop = stop
        self._lock = threading.Lock()
        self._tickets = itertools.count(1)
        self._running: tuple[int, Config] | None = None
        self._next: tuple[int, Config] | None = None  # asked while another fetch runs
        self._finished: Finished | None = None

    def ask(self, cfg: Config) -> int:
        """Fetch ``cfg``'s lists: the ticket of the fetch that will bring them (one already
        asked or running with the same settings, or a new one, run after the current)."""
        with self._lock:
            if self._next is not None and same_lists(self._next[1], cfg):
                return self._next[0]
            if (
                self._next is None
                and self._running is not None
                and same_lists(self._running[1], cfg)
            ):
                return self._running[0]
            ticket = next(self._tickets)
            self._next = (ticket, cfg)  # replaces one asked for settings no longer wanted
            if self._running is None:
                self._start_next()
            return ticket

    def take(self) -> Finished | None:
        """The newest fetch ended since the last ``take``, if any."""
        with self._lock:
            finished, self._finished = self._finished, None
            return finished

    def pending(self) -> int | None:
        """The ticket of the newest fetch asked and not taken yet (None: there is none)."""
        with self._lock:
            for asked in (self._next, self._running):
                if asked is not None:
                    return asked[0]
            return None if self._finished is None else self._finished.ticket

    @property
    def busy(self) -> bool:
        """A fetch is asked, running, or ended and not taken yet."""
        with self._lock:
            return any(x is not None for x in (self._running, self._next, self._finished))

    def _start_next(self) -> None:
        # Called with the lock held. The worker decides under the same lock whether it goes on
        # with the next fetch or ends, so that two workers never run at once.
        assert self._next is not None
        self._running, self._next = self._next, None
        ticket, cfg = self._running
        worker = threading.Thread(
            target=self._work, args=(ticket, cfg), name="image-list-reader", daemon=True
        )
        try:
            worker.start()
        except RuntimeError:
            self._running = None  # no thread to be had: asked again at the next look
            raise

    def _work(self, ticket: int, cfg: Config) -> None:
        while True:
            fetched = None if self._stop.is_set() else self._fetch_safely(cfg)
            with self._lock:
                if fetched is None or self._stop.is_set():
                    self._running = self._next = None
                    return  # the controller stops: nobody is left to apply it
                self._finished = Finished(ticket, fetched)
                self._running, self._next = self._next, None
                following = self._running
            self._done()
            if following is None:
                return
            ticket, cfg = following

    def _fetch_safely(self, cfg: Config) -> Fetched:
        try:
            return self._fetch(cfg)
        except Exception as err:  # noqa: BLE001 - the controller must hear of every fetch
            log.exception("image_list_read_crashed")
            why = f"reading failed ({type(err).__name__})"
            return Fetched(
                _settings(cfg),
                {url: imagelists.ListUnavailable(url, why) for url in cfg.images_from},
            )
