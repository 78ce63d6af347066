"""A keyed work queue, as controller-runtime's: what to look at again, and when.

Keys, not events: however many changes concern a puller before a worker is free, it is looked
at once (de-duplication), and never by two workers at once (a key added while it is being
processed is queued again when that look is done). A key may be added for later
(``add_after``: a refresh that is due, a deadline), and a look that failed is retried with a
delay that doubles per failure of that key up to a bound (``add_rate_limited``), reset once a
look succeeds (``forget``). The clock is injectable, so the delays are tested without waiting.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

BASE_DELAY = 0.005  # seconds: the first retry after a failure
MAX_DELAY = 300.0  # seconds: the longest wait between retries of one key

# How a ``get`` with nothing due passes the time until the next delayed key (None: until a
# key is added): the condition's own wait, which an add or a shutdown cuts short. Tests give
# one that moves their clock instead, so a growing backoff is tested without waiting.
Pause = Callable[[threading.Condition, "float | None"], object]


def wait_on(changed: threading.Condition, timeout: float | None) -> object:
    return changed.wait(timeout)


class WorkQueue(Generic[K]):
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        base_delay: float = BASE_DELAY,
        max_delay: float = MAX_DELAY,
        pause: Pause = wait_on,
    ):
        self.clock = clock
        self.pause = pause
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._ready: deque[K] = deque()
        self._queued: set[K] = set()  # in _ready
        self._processing: set[K] = set()
        self._dirty: set[K] = set()  # added while processing: queued again by done()
        self._later: list[tuple[float, int, K]] = []  # (when, order, key), a heap
        self._due: dict[K, float] = {}  # the earliest time each delayed key is wanted
        self._order = 0
        self._failures: dict[K, int] = {}
        self._shut = False
        self._changed = threading.Condition()

    # --- adding ------------------------------------------------------------------------------

    def add(self, key: K) -> None:
        """Look at ``key`` as soon as a worker is free (once, however often it is added)."""
        with self._changed:
            self._add(key)

    def add_after(self, key: K, delay: float) -> None:
        """Look at ``key`` in ``delay`` seconds; an earlier wish for the same key wins."""
        if delay <= 0:
            self.add(key)
            return
        with self._changed:
            if self._shut:
                return
            when = self.clock() + delay
            if self._due.get(key, float("inf")) <= when:
                return
            self._due[key] = when
            self._order += 1
            heapq.heappush(self._later, (when, self._order, key))
            self._changed.notify()

    def add_rate_limited(self, key: K) -> float:
        """A look at ``key`` failed: try again after a delay that doubles with each failure
        in a row (from ``base_delay`` up to ``max_delay``). Returns the delay."""
        with self._changed:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay: float = min(self.base_delay * 2.0**failures, self.max_delay)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """A look at ``key`` succeeded: its next failure starts from ``base_delay`` again."""
        with self._changed:
            self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        with self._changed:
            return self._failures.get(key, 0)

    # --- taking ------------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> K | None:
        """The next key to look at, marked as being processed (call ``done`` after); None on
        shutdown, or when nothing is due within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                self._move_due()
                if self._shut:
                    return None
                if self._ready:
                    key = self._ready.popleft()
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                wait = self._until_next_due()
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self.pause(self._changed, wait)

    def done(self, key: K) -> None:
        """The look at ``key`` is over; if it was added meanwhile, it is queued again."""
        with self._changed:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add(key)

    def shutdown(self) -> None:
        """Wake every waiting ``get`` with None; nothing is added from now on."""
        with self._changed:
            self._shut = True
            self._changed.notify_all()

    def __len__(self) -> int:
        with self._changed:
            return len(self._ready) + len(self._due)

    # --- inside ------------------------------------------------------------------------------

    def _add(self, key: K) -> None:
        if self._shut:
            return
        self._due.pop(key, None)  # wanted now: an earlier-or-equal wish than any later one
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._changed.notify()

    def _move_due(self) -> None:
        now = self.clock()
        while self._later and self._later[0][0] <= now:
            when, _, key = heapq.heappop(self._later)
            if self._due.get(key) == when:  # not superseded by an earlier wish or an add
                del self._due[key]
                self._add(key)

    def _until_next_due(self) -> float | None:
        while self._later and self._due.get(self._later[0][2]) != self._later[0][0]:
            heapq.heappop(self._later)  # superseded entries
        if not self._later:
            return None
        return max(0.0, self._later[0][0] - self.clock())
