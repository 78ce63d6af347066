"""New configurations offered to a running puller, applied only once the API accepts them.

A ConfigMap edit (single mode) or a resource's new generation (operator mode) arrives from
another thread. The look takes the newest; a bad one changes nothing that runs, and it is
never dropped: a refused one (an admission policy may change its mind) and one the API could
not check (a webhook down) are tried again after a growing pause until one applies or a
newer offer replaces it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from imagepuller.apierrors import ConfigRejected, KubeError, Stopped
from imagepuller.config import Config
from imagepuller.logs import configure_logging
from imagepuller.metrics import Metrics

log = structlog.get_logger("imagepuller.controller")

# Pause before a configuration not applied is tried again: doubles up to the second value.
OFFER_BACKOFF = (2.0, 60.0)

# Told that a configuration was not applied: (offered, why, refused by the API rather than
# unchecked).
NotApplied = Callable[[Config, str, bool], None]


class ConfigOffers:
    def __init__(self, clock: Callable[[], float], metrics: Metrics, not_applied: NotApplied):
        self.clock = clock
        self.metrics = metrics
        self.not_applied = not_applied
        self._lock = threading.Lock()
        self._offered: tuple[Config, int | None] | None = None
        # The newest configuration offered and not applied yet, with the caller's tag (the
        # resource generation in operator mode), and when it is tried again.
        self._pending: tuple[Config, int | None] | None = None
        self._retry_at: float | None = None
        self._backoff = OFFER_BACKOFF[0]
        self.applied_tag: int | None = None  # the tag of the configuration in force
        # (tag, why) while the newest offer is refused or could not be checked; reported.
        self.refused: tuple[int | None, str] | None = None
        self.refused_by_api = False  # refused (True), or the check itself failed (False)

    def offer(self, config: Config, tag: int | None) -> None:
        """Called from another thread; the next look takes it."""
        with self._lock:
            self._offered = (config, tag)

    def take(
        self, current: Config, check: Callable[[Config], None]
    ) -> tuple[Config | None, float | None]:
        """The configuration to apply now (None: keep ``current``), and the seconds until one
        refused or unchecked is tried again (None: nothing waits). ``check`` raises
        ConfigRejected when the API refuses what a configuration makes."""
        with self._lock:
            if self._offered is not None:
                self._pending, self._offered = self._offered, None
                self._retry_at, self._backoff = None, OFFER_BACKOFF[0]
        if self._pending is None:
            return None, None
        if self._retry_at is not None and self.clock() < self._retry_at:
            return None, self._retry_at - self.clock()
        offered, tag = self._pending
        if offered == current:
            self._pending, self.applied_tag, self.refused = None, tag, None
            return None, None
        try:
            check(offered)
        except ConfigRejected as err:
            return None, self._not_applied(current, offered, tag, str(err), refused=True)
        except Stopped:
            raise  # stopping (or no longer the leader): not a failed check
        except KubeError as err:
            why = f"the API could not check the new configuration: {err}"
            return None, self._not_applied(current, offered, tag, why, refused=False)
        self._pending, self._retry_at, self.refused = None, None, None
        self.applied_tag = tag
        return offered, None

    def _not_applied(
        self, current: Config, offered: Config, tag: int | None, why: str, *, refused: bool
    ) -> float:
        """Report (once per reason) a configuration not applied; when to try it again."""
        wait = self._backoff
        self._retry_at = self.clock() + wait
        self._backoff = min(wait * 2, OFFER_BACKOFF[1])
        if self.refused == (tag, why):
            return wait
        self.refused, self.refused_by_api = (tag, why), refused
        log.error(
            "config_rejected" if refused else "config_not_checked",
            error=why,
            retry_seconds=wait,
            note="keeping the configuration in force; trying the new one again until it "
            "applies or a newer one replaces it",
        )
        if refused:
            self.metrics.config_rejected(current.namespace, current.daemonset_name)
        self.not_applied(offered, why, refused)
        return wait


def config_applied(previous: Config, applied: Config) -> None:
    """Say which settings changed, and follow a change of the logging settings at once."""
    if (applied.log_format, applied.log_level) != (previous.log_format, previous.log_level):
        configure_logging(applied.log_format, applied.log_level)
    changed = sorted(
        key for key, value in applied.summary().items() if previous.summary().get(key) != value
    )
    log.info("config_applied", changed=changed)
