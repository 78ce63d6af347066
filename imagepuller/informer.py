"""A watch-fed cache of one kind of object in one namespace, and a queue that says "look again".

The informer lists, then watches from the list's resourceVersion, in a thread of its own; an
expired watch lists again, a broken one is retried with a pause. Every change replaces the
cached object and calls ``notify``: it carries no event to act on, only "something changed",
so the reconciler reads the cache and decides from what is there now (level-triggered).

A failure that lasts (the resource's CRD not installed, a permission missing) is retried with
a pause doubling up to ``MAX_RETRY_PAUSE``, and logged when it starts or changes, then every
``REPEAT_LOG_SECONDS`` with a count: not a line a second for as long as it lasts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from imagepuller import objects
from imagepuller.apierrors import Expired, KubeError, Stopped, Transient
from imagepuller.kube import Kube

log = structlog.get_logger("imagepuller.informer")

# Pause after a failed list or a broken watch, doubled at each failure in a row up to the
# maximum; a watch that works again starts it afresh. A stop cuts it short.
RETRY_PAUSE = 1.0
MAX_RETRY_PAUSE = 30.0
# The same failure again is logged at most this often (with how many times it happened).
REPEAT_LOG_SECONDS = 300.0


class Informer:
    def __init__(
        self,
        kube: Kube,
        kind: tuple[str, str],
        namespace: str,
        notify: Callable[[], None] | None,
        *,
        name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        observe: Callable[[dict[str, Any] | None], None] | None = None,
    ):
        self.kube = kube
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.notify = notify
        # Shared informers (operator mode) say which object changed, so that only the keys it
        # concerns are looked at again; None after a (re)list: any of them may have changed.
        self.observe = observe
        self._failures = _Failures(kind[0], namespace, clock)
        # By (namespace, name): an informer of every namespace ("") holds equal names.
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._ended = threading.Event()  # this informer was stopped (not the whole process)
        self._thread = threading.Thread(
            target=self._run, name=f"informer-{kind[0]}-{namespace}", daemon=True
        )

    # --- reading ----------------------------------------------------------------------------

    def get(self, name: str) -> dict[str, Any] | None:
        """The object called ``name`` in this informer's namespace (None when there is none)."""
        return self.get_in(self.namespace, name)

    def get_in(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object ``namespace``/``name`` (an informer of every namespace holds them all)."""
        with self._lock:
            return self._objects.get((namespace, name))

    def items(self) -> list[dict[str, Any]]:
        """Every object in the cache (a snapshot)."""
        with self._lock:
            return list(self._objects.values())

    def has_synced(self) -> bool:
        """The first list is in: an absent object is really absent, not just not seen yet."""
        return self._synced.is_set()

    # --- running ----------------------------------------------------------------------------

    def start(self) -> Informer:
        """Start watching (once: a shared informer is started by whoever needs it first)."""
        with self._lock:
            if self._thread.ident is None:  # never started
                self._thread.start()
        return self

    def end(self) -> None:
        """Stop this informer (its namespace is no longer watched); the thread ends with its
        current watch, which the server closes within ``WATCH_MAX_SECONDS``."""
        self._ended.set()

    def _stopped(self) -> bool:
        return self._ended.is_set() or self.kube.stop.is_set()

    def _run(self) -> None:
        selector = f"metadata.name={self.name}" if self.name else None
        while not self._stopped():
            try:
                items, version = self.kube.list_objects(
                    self.kind, self.namespace, field_selector=selector
                )
                self._replace(items)
                while not self._stopped():
                    for kind, obj in self.kube.watch_objects(
                        self.kind, self.namespace, version, field_selector=selector
                    ):
                        if self._stopped():
                            return
                        self._failures.ended()  # the watch delivers
                        version = objects.resource_version(obj) or version
                        if kind != "BOOKMARK":
                            self._apply(kind, obj)
                    self._failures.ended()  # the server closed the watch in time, as it does
            except Stopped:
                return
            except (Expired, Transient) as err:
                fields = self._failures.failed("watch_restarted", str(err))
                if fields is not None:
                    log.info("watch_restarted", reason=str(err), **fields)
            except KubeError as err:
                # Forbidden, for example: the reconciler reports what it cannot do itself.
                fields = self._failures.failed("watch_failed", str(err))
                if fields is not None:
                    log.warning("watch_failed", error=str(err), **fields)
            self.kube.stop.wait(self._failures.pause())

    def _key(self, obj: dict[str, Any]) -> tuple[str, str]:
        return objects.namespace(obj) or self.namespace, objects.name(obj)

    def _replace(self, items: list[dict[str, Any]]) -> None:
        with self._lock:
            self._objects = {self._key(obj): obj for obj in items}
        self._synced.set()
        self._changed(None)

    def _changed(self, obj: dict[str, Any] | None) -> None:
        """Tell whoever listens: ``notify`` that something changed, ``observe`` what."""
        if self.notify is not None:
            self.notify()
        if self.observe is not None:
            self.observe(obj)

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        key = self._key(obj)
        with self._lock:
            if kind == "DELETED":
                self._objects.pop(key, None)
            else:
                self._objects[key] = obj
        self._changed(obj)


class _Failures:
    """The failures in a row of one informer: how long to pause, and what to log."""

    def __init__(self, kind: str, namespace: str, clock: Callable[[], float]):
        self.kind, self.namespace, self.clock = kind, namespace, clock
        self.in_a_row = 0
        self._last: tuple[str, str] | None = None  # (event, error) last logged
        self._last_logged_at = 0.0
        self._not_logged = 0  # repeats of the last one since it was logged

    def failed(self, event: str, error: str) -> dict[str, Any] | None:
        """Count a failure; the fields to log it with, or None when it is not to be logged (the
        same as the last one logged, less than ``REPEAT_LOG_SECONDS`` ago)."""
        self.in_a_row += 1
        now = self.clock()
        if (event, error) == self._last and now - self._last_logged_at < REPEAT_LOG_SECONDS:
            self._not_logged += 1
            return None
        fields: dict[str, Any] = {"kind": self.kind, "namespace": self.namespace}
        if (event, error) == self._last:
            fields["repeats"] = self._not_logged + 1  # this one and those not logged
        self._last, self._last_logged_at, self._not_logged = (event, error), now, 0
        return fields

    def pause(self) -> float:
        """The pause after the failure just counted: 1 s, doubled each time, at most 30 s."""
        doublings = min(self.in_a_row - 1, 30)  # bounded: 2.0**1100 would overflow a float
        return min(MAX_RETRY_PAUSE, RETRY_PAUSE * 2.0 ** max(0, doublings))

    def ended(self) -> None:
        """The watch works: the next failure pauses 1 s again and is logged at once."""
        if not self.in_a_row:
            return
        if self._last is not None and self._last[0] == "watch_failed":
            log.info(
                "watch_recovered", kind=self.kind, namespace=self.namespace, failures=self.in_a_row
            )
        self.in_a_row, self._last, self._not_logged = 0, None, 0
