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

from imagepuller.config import DEFAULT_HEALTHZ_STUCK_AFTER_SECONDS


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
