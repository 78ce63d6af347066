"""Operator mode's pullers: a ``Controller`` per resource, started, offered its resource's new
generations, and stopped.

A spec the operator cannot read is reported (the status, a Warning Event once per generation)
and changes nothing that runs. A spec the API refuses ends that resource's controller, which
starts again only for a new generation. The map of pullers is per key, and a key is looked at
by one worker at a time; the lock guards the maps' shape against the watch threads that read
them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from imagepuller import objects
from imagepuller.config import Config, ConfigError
from imagepuller.controller import Controller, controller_client
from imagepuller.events import EventRecorder, involved
from imagepuller.health import WorkerHealth
from imagepuller.informer import Informer
from imagepuller.metrics import Metrics
from imagepuller.resource import KIND
from imagepuller.resourcewatch import API_VERSION, Key

log = structlog.get_logger("imagepuller.operator")


@dataclass
class Puller:
    """One resource's controller."""

    controller: Controller
    generation: int  # the newest resource generation offered to it (applied: controller's tag)
    # Its controller is over (the API refused its configuration, or it was stopped): it is
    # looked at again only for a new generation.
    ended: bool = False


@dataclass(frozen=True)
class PullerWiring:
    """What every resource's controller shares with the operator."""

    api_client: Any
    identity: str  # the operator's; each controller's is this and its resource's key
    metrics: Metrics
    health: WorkerHealth
    stuck_after: float
    clock: Callable[[], float]
    wall: Callable[[], float]
    owner: Callable[[Key], dict[str, Any] | None]  # the resource, from the shared cache
    informer: Callable[[str], Informer]  # the shared DaemonSet watch of a namespace
    look_again: Callable[[Key], None]  # puts the key in the work queue


class PullerSet:
    def __init__(
        self,
        wiring: PullerWiring,
        events: EventRecorder,
        parse: Callable[[Key, dict[str, Any]], Config | ConfigError],
    ):
        self.wiring = wiring
        self.events = events
        self.parse = parse  # the spec as a configuration, with the name claims judged
        self.lock = threading.Lock()
        self.by_key: dict[Key, Puller] = {}
        # Specs judged invalid, by generation: not parsed again until a new one.
        self.invalid: dict[Key, tuple[int, list[str]]] = {}
        self._reported: set[tuple[Key, int, str]] = set()  # Warning Events already sent
        self.openshift: bool | None = None  # the cluster's platform, once a controller asked

    def wanting(self, namespace: str, name: str) -> set[Key]:
        """The resources whose DaemonSet is ``namespace``/``name``."""
        with self.lock:
            pullers = list(self.by_key.items())
        return {
            key
            for key, puller in pullers
            if key[0] == namespace and puller.controller.config.daemonset_name == name
        }

    def running_name(self, key: Key) -> str | None:
        puller = self.by_key.get(key)
        return puller.controller.config.daemonset_name if puller is not None else None

    def keys(self) -> set[Key]:
        with self.lock:
            return {*self.by_key, *self.invalid}

    def ensure(self, key: Key, resource: dict[str, Any]) -> None:
        """The resource's controller runs its newest valid generation (or is offered it)."""
        generation = objects.generation(resource)
        puller = self.by_key.get(key)
        if self.invalid.get(key, (None,))[0] == generation:
            return  # already judged invalid; what runs (if anything) keeps running
        if (
            puller is not None
            and puller.generation == generation
            and (not puller.ended or puller.controller.rejected)
        ):
            return  # running it, or the API refused it: only a new generation is tried again
        config = self.parse(key, resource)
        if isinstance(config, ConfigError):
            err = config
            self.invalid[key] = (generation, err.problems)  # what runs keeps running
            self.warn_once(key, generation, resource, "InvalidSpec", "; ".join(err.problems))
            log.error(
                "config_rejected",
                resource=f"{key[0]}/{key[1]}",
                generation=generation,
                problems=err.problems,
                note="nothing that runs was changed",
            )
            return
        self.invalid.pop(key, None)
        if puller is not None and not puller.ended:
            puller.generation = generation
            puller.controller.offer(config, generation)
            return
        if puller is not None:  # its controller ended (the API refused its configuration)
            with self.lock:
                self.by_key.pop(key)
            puller.controller.request_stop()
        self._start(key, config, generation)

    def _start(self, key: Key, config: Config, generation: int) -> None:
        wiring = self.wiring
        stop = threading.Event()
        kube, _ = controller_client(
            wiring.api_client,
            config,
            stop=stop,
            metrics=wiring.metrics,
            stuck_after=wiring.stuck_after,
            health=wiring.health,
        )
        controller = Controller(
            config,
            kube,
            stop=stop,
            clock=wiring.clock,
            wall=wiring.wall,
            # Each resource is its own keeper: what one resource's controller claims or retires
            # is never taken for another's, though one process runs them all.
            identity=f"{wiring.identity}/{key[0]}/{key[1]}",
            delete_on_shutdown=False,
            metrics=wiring.metrics,
            health=wiring.health,
            events=EventRecorder(kube, wiring.identity, wiring.wall),
            owner=lambda _config: wiring.owner(key),
            informer=lambda _kube, _kind, namespace, _poke: wiring.informer(namespace),
            poke=lambda: wiring.look_again(key),
        )
        controller.offers.applied_tag = generation  # the generation it starts with
        # The platform is the cluster's: once a controller has asked, the others need not.
        controller.state.openshift = self.openshift
        with self.lock:
            self.by_key[key] = Puller(controller, generation)
        log.info("puller_started", resource=f"{key[0]}/{key[1]}", daemonset=config.daemonset_name)

    def stop(self, key: Key, *, why: str) -> None:
        with self.lock:
            puller = self.by_key.pop(key, None)
        if puller is None:
            return
        controller = puller.controller
        controller.request_stop()  # its list reader, if any, and any call of its own
        controller.shutdown()  # keeps the DaemonSet (delete_on_shutdown is off): a log line
        if why == "resource deleted":
            self.wiring.metrics.forget(
                controller.config.namespace, controller.config.daemonset_name
            )
        log.info("puller_stopped", resource=f"{key[0]}/{key[1]}", why=why)

    def forget(self, key: Key) -> bool:
        """The resource is gone: its controller and what was kept for it. Whether another
        resource of its namespace is still served."""
        self.stop(key, why="resource deleted")
        with self.lock:
            self.invalid.pop(key, None)
            self._reported = {sent for sent in self._reported if sent[0] != key}
            return any(k[0] == key[0] for k in self.by_key)

    def warn_once(
        self, key: Key, generation: int, resource: dict[str, Any], reason: str, note: str
    ) -> None:
        """A Warning Event on the resource, once per generation and reason."""
        with self.lock:
            if (key, generation, reason) in self._reported:
                return
            self._reported.add((key, generation, reason))
        self.events.record(
            involved(resource, API_VERSION, KIND),
            warning=True,
            reason=reason,
            action="Configure",
            note=note,
        )
