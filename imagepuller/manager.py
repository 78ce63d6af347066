"""A few workers serving one work queue, as controller-runtime's controller does.

Each worker takes a key, calls ``reconcile(key)`` and does what the result says: nothing
(the next change of what the key concerns puts it back), look again after ``requeue_after``
seconds, or, after a failure, after a pause that doubles per failure of that key (the queue's
``add_rate_limited``). Keys, not events: a key is looked at by one worker at a time, and many
changes before a worker is free make one look. The number of threads does not grow with the
number of keys.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from imagepuller.apierrors import Stopped
from imagepuller.health import Health
from imagepuller.workqueue import WorkQueue

log = structlog.get_logger("imagepuller.manager")

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Result:
    """What one reconcile came to (controller-runtime's ``reconcile.Result``)."""

    requeue_after: float | None = None  # None: when something it concerns changes
    failed: bool = False  # tried again after the key's growing pause


def sooner(a: float | None, b: float | None) -> float | None:
    """The earlier of two requeue times (None: no time, only a change brings the key back)."""
    if a is None:
        return None if b is None else max(0.0, b)
    return max(0.0, a if b is None else min(a, b))


class Manager(Generic[K]):
    def __init__(
        self,
        reconcile: Callable[[K], Result],
        queue: WorkQueue[K],
        *,
        workers: int,
        health: Health,
        describe: Callable[[K], str] = str,
    ):
        self.reconcile = reconcile
        self.queue = queue
        self.health = health
        self.describe = describe  # a key as the log names it
        self._threads = [
            threading.Thread(target=self._work, name=f"worker-{n}", daemon=True)
            for n in range(workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, within: float) -> bool:
        """No new look starts; wait at most ``within`` seconds for the looks underway (their
        calls are cut short by the stop event the caller has set). True when all ended."""
        self.queue.shutdown()
        deadline = time.monotonic() + within
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _work(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return  # shut down
            try:
                self.process(key)
            finally:
                self.queue.done(key)

    def process(self, key: K) -> None:
        """Look at ``key`` once and queue it again as the result says (a worker's step)."""
        try:
            result = self.reconcile(key)
        except Stopped:
            return
        except Exception:  # noqa: BLE001 - one bad look must not end a worker
            self.health.look_ended()
            log.exception("reconcile_failed", key=self.describe(key))
            result = Result(failed=True)
        if result.failed:
            delay = self.queue.add_rate_limited(key)
            log.info("cycle_retry", key=self.describe(key), wait_seconds=delay)
            return
        self.queue.forget(key)
        if result.requeue_after is not None:
            self.queue.add_after(key, result.requeue_after)
