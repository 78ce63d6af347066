"""Looking at one puller again and again: each look's errors classified, and single mode
as the manager with one key.

``step`` is one look that never raises: an error becomes a log line, the health's verdict and
"try again after a growing pause"; a configuration the API refuses at start, or a stop, ends
the puller with its exit code. Both modes serve their keys with ``manager.Manager``: single
mode (``run``) one worker and one key, the puller; operator mode a few workers and a key per
resource. Either way a failed look is retried after the work queue's per-key backoff, and a
watch event or a list reading puts the key back in the queue.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Protocol

import structlog

from imagepuller import exitcodes
from imagepuller.apierrors import (
    ConfigRejected,
    Conflict,
    DaemonSetInTheWay,
    Forbidden,
    KubeError,
    NamespaceTerminating,
    Stopped,
)
from imagepuller.config import Config
from imagepuller.health import Health
from imagepuller.manager import Manager, Result
from imagepuller.metrics import Metrics
from imagepuller.workqueue import WorkQueue

log = structlog.get_logger("imagepuller.controller")

# Pause after a failed reconcile: doubles from the first value up to the second.
ERROR_BACKOFF = (2.0, 60.0)
# Single mode's one key.
PULLER = "puller"
# After a stop, the look underway gets this long to end on its own. If a call it is blocked
# in cannot be interrupted (an unanswered request), the shutdown goes on without it and
# deletes the DaemonSet itself (at most 3 s connect + 10 s read), all well within the default
# 30 s grace period.
LOOK_STOP_SECONDS = 12.0
# 403s in a row for this long are a missing permission, not an API server warming up.
FORBIDDEN_PERSISTS_SECONDS = 10.0
# After a write refused because the DaemonSet changed meanwhile: look again this soon.
CONFLICT_RETRY_SECONDS = 0.2


@dataclasses.dataclass(frozen=True)
class Step:
    """What one look came to."""

    requeue: float | None  # seconds until the next look (None: when something changes)
    failed: bool = False  # it failed: tried again after a pause that grows per failure
    conflict: bool = False  # a write met a newer DaemonSet: looked at again at once
    exit_code: int | None = None  # the controller is over, with this exit code


class Looked(Protocol):
    """The puller a loop looks at (``Controller``)."""

    config: Config
    health: Health
    metrics: Metrics
    clock: Callable[[], float]
    stop: threading.Event
    queue: WorkQueue[str]
    rejected: str | None

    def reconcile(self) -> float | None: ...


class PullerLoop:
    def __init__(self, puller: Looked):
        self.puller = puller
        self._forbidden_since: float | None = None  # (clock) when the 403s in a row began
        self._exit_code = exitcodes.OK

    def run(self) -> int:
        """Single mode: the manager with one worker and one key, until the stop event is set
        (a signal, or a look that ends the puller). Returns the exit code."""
        puller = self.puller
        manager = Manager(self._look, puller.queue, workers=1, health=puller.health)
        puller.queue.add(PULLER)
        manager.start()
        puller.stop.wait()
        if not manager.stop(LOOK_STOP_SECONDS):
            log.warning(
                "shutdown_forced",
                waited_seconds=LOOK_STOP_SECONDS,
                note="the controller was blocked in an API call; deleting the DaemonSet now",
            )
        return self._exit_code

    def _look(self, key: str) -> Result:
        step = self.step()
        if step.exit_code is not None:
            self._exit_code = step.exit_code
            self.puller.stop.set()  # the puller is over: ``run`` returns
            return Result()
        return Result(step.requeue, step.failed)

    def step(self) -> Step:
        """One reconcile with its errors classified: never raises. What it came to says when
        to look again, whether it failed (retried after a growing pause), or that this
        controller is over (stopping, or a configuration the API refuses at start)."""
        puller = self.puller
        puller.health.look_started()
        started = puller.clock()
        try:
            requeue = puller.reconcile()
        except Stopped:
            puller.health.look_ended()
            return Step(None, exit_code=exitcodes.OK)
        except ConfigRejected as err:
            # Deterministic, so retrying cannot help; what already runs was not touched.
            log.error("config_rejected", error=str(err))
            puller.metrics.config_rejected(puller.config.namespace, puller.config.daemonset_name)
            puller.rejected = str(err)
            puller.health.look_ended()
            return Step(None, exit_code=exitcodes.CONFIG)
        except NamespaceTerminating as err:
            # Not a permission: even a cluster admin gets this 403. Tried again in case the
            # namespace is recreated (an uninstall and reinstall).
            log.error("namespace_terminating", namespace=puller.config.namespace, error=str(err))
            puller.health.set_not_ready(str(err))
        except Forbidden as err:
            self._refused(err)
        except Conflict as err:
            # Someone else wrote the DaemonSet between our read and our write: most often
            # another puller taking the name over, or its deletion finishing. Not an API
            # failure; the next reconcile reads it again and decides.
            log.warning(
                "daemonset_changed_meanwhile",
                name=puller.config.daemonset_name,
                detail=str(err),
                note="the DaemonSet changed between our read and our write; looking again",
            )
            puller.health.look_ended()
            return Step(CONFLICT_RETRY_SECONDS, conflict=True)
        except DaemonSetInTheWay as err:
            log.error("daemonset_in_the_way", error=str(err))
        except KubeError as err:
            log.error("api_error", error=str(err), status=err.status)
            puller.health.set_not_ready(f"no answer from the API: {err}")
        except Exception:  # noqa: BLE001 - one bad reconcile must not end the puller
            log.exception("cycle_failed")
        else:
            self._forbidden_since = None
            puller.health.set_ready()
            self._look_done("success" if requeue is None else "requeue_after", started)
            return Step(requeue)
        self._look_done("error", started)
        return Step(None, failed=True)

    def _refused(self, err: Forbidden) -> None:
        """A 403 is a missing permission only when it persists: an API server that has just
        restarted refuses for a moment while its authorization warms up."""
        now = self.puller.clock()
        if self._forbidden_since is None:
            self._forbidden_since = now
        if now - self._forbidden_since >= FORBIDDEN_PERSISTS_SECONDS:
            log.error("api_forbidden", missing_permission=err.permission, error=str(err))
            self.puller.health.set_not_ready(str(err))
        else:
            log.warning(
                "api_refused",
                missing_permission=err.permission,
                error=str(err),
                note="tried again; called a missing permission if it persists "
                f"{FORBIDDEN_PERSISTS_SECONDS:g} s (an API server's authorization can refuse "
                "for a moment after a restart)",
            )

    def _look_done(self, result: str, started: float) -> None:
        # Before the wait: an idle controller is not a stuck one.
        self.puller.health.look_ended()
        self.puller.metrics.reconciled(result, self.puller.clock() - started)
