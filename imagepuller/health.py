"""Whether the controller is alive (its loop makes progress) and ready (it has cluster access
and a valid configuration): what /healthz and /readyz answer, and so what the kubelet's probes
act on.

Alive is about being *stuck*, not about being idle: a controller waiting an hour for the next
refresh is healthy. The loop marks when a look begins and ends, and every answer from the API
(even an error that is retried) counts as progress, so only a look that has heard nothing for
``stuck_after`` seconds — a call blocked on a connection that never answers, a deadlock — fails
the liveness probe, and the kubelet restarts the pod (which adopts the DaemonSet, re-pulling
nothing).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from imagepuller.settings import DEFAULT_HEALTHZ_STUCK_AFTER_SECONDS


class Health:
    def __init__(
        self,
        stuck_after: float = DEFAULT_HEALTHZ_STUCK_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stuck_after = stuck_after
        self.clock = clock
        self._lock = threading.Lock()
        self._busy_since: float | None = None
        self._last_progress = clock()
        self._not_ready: str | None = "starting: the first look at the cluster has not finished"

    # --- the worker reports ---------------------------------------------------------------

    def look_started(self) -> None:
        with self._lock:
            self._busy_since = self._last_progress = self.clock()

    def look_ended(self) -> None:
        with self._lock:
            self._busy_since = None
            self._last_progress = self.clock()

    def progress(self) -> None:
        """Something was heard (an API answer, a list read): the look is not stuck."""
        with self._lock:
            self._last_progress = self.clock()

    def set_ready(self) -> None:
        with self._lock:
            self._not_ready = None

    def set_not_ready(self, why: str) -> None:
        with self._lock:
            self._not_ready = why

    # --- the probes ask -------------------------------------------------------------------

    def alive(self) -> tuple[bool, str]:
        with self._lock:
            if self._busy_since is None:
                return True, "ok: idle, waiting for the next change or refresh"
            silent = self.clock() - self._last_progress
            if silent <= self.stuck_after:
                return True, "ok: working"
            return False, (
                f"stuck: the current look has heard nothing for {silent:.0f} s "
                f"(more than {self.stuck_after:g} s); a call may be blocked"
            )

    def ready(self) -> tuple[bool, str]:
        with self._lock:
            if self._not_ready is None:
                return True, "ok"
            return False, self._not_ready


class WorkerHealth(Health):
    """The health of a pool of workers (operator mode): each worker thread reports on a
    ``Health`` of its own, so one worker blocked on a call is not hidden by the progress of
    the others; alive only while none of them is stuck. Readiness is the process's: a
    resource that cannot be served is reported on its status, not by restarting the pod."""

    def __init__(
        self,
        stuck_after: float = DEFAULT_HEALTHZ_STUCK_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(stuck_after, clock)
        self._workers: dict[int, tuple[str, Health]] = {}
        self._not_ready = None  # ready: set_ready/set_not_ready below are not the pool's

    def _mine(self) -> Health:
        ident = threading.get_ident()
        with self._lock:
            entry = self._workers.get(ident)
            if entry is None:
                entry = (threading.current_thread().name, Health(self.stuck_after, self.clock))
                self._workers[ident] = entry
            return entry[1]

    def look_started(self) -> None:
        self._mine().look_started()

    def look_ended(self) -> None:
        self._mine().look_ended()

    def progress(self) -> None:
        self._mine().progress()

    def set_ready(self) -> None:
        pass  # a resource's readiness goes to its status

    def set_not_ready(self, why: str) -> None:
        pass

    def alive(self) -> tuple[bool, str]:
        with self._lock:
            workers = list(self._workers.values())
        for name, health in workers:
            ok, why = health.alive()
            if not ok:
                return False, f"{name}: {why}"
        return True, "ok"
