"""Operator mode's watches, and which resources a change concerns.

One watch of the resources per watched namespace (or one of every namespace), and one of the
DaemonSets per namespace that has a resource, shared by every resource there: never a watch
per resource. Their events carry no work; they only put in the work queue the keys (a
resource's namespace and name) a change concerns:
- a resource: itself; and, when it appears, goes, or has a new generation (its claim on a
  DaemonSet name may have changed), the other resources of its namespace, since which of them
  keeps a contested name may change with it;
- a DaemonSet: the resource that owns it, or, when no resource owns it (yet), the resources
  whose DaemonSet has its name;
- a (re)list: every resource it covers, and every one known before (a deletion missed while
  the watch was down).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from imagepuller import objects
from imagepuller.informer import Informer
from imagepuller.kube import DAEMONSETS, PULLERS, Kube
from imagepuller.resource import GROUP, KIND, VERSION
from imagepuller.workqueue import WorkQueue

API_VERSION = f"{GROUP}/{VERSION}"

Key = tuple[str, str]  # a resource's (namespace, name)


# Home: objects.generation; named here for the modules that still import it from here.


def key_of(resource: Mapping[str, Any]) -> Key:
    return objects.namespace(resource), objects.name(resource)


class ResourceWatches:
    def __init__(
        self,
        api_client: Any,
        kube: Kube,
        namespaces: tuple[str, ...],
        queue: WorkQueue[Key],
        *,
        wanting: Callable[[str, str], set[Key]],
        known: Callable[[], set[Key]],
    ):
        self.api_client = api_client
        self.kube = kube
        self.namespaces = namespaces
        self.queue = queue
        self.wanting = wanting  # (namespace, DaemonSet name) -> the resources whose name it is
        self.known = known  # every key the operator keeps something for
        self._lock = threading.Lock()
        self._resources: list[Informer] = []
        self._daemonsets: dict[str, Informer] = {}
        self._seen_generation: dict[Key, int] = {}

    # --- running --------------------------------------------------------------------------

    def start(self) -> None:
        self._resources = [
            Informer(self.kube, PULLERS, namespace, None, observe=self.resource_changed)
            for namespace in self.namespaces
        ]
        for informer in self._resources:
            informer.start()

    def end(self) -> None:
        for informer in self._resources:
            informer.end()
        with self._lock:
            daemonsets, self._daemonsets = list(self._daemonsets.values()), {}
        for informer in daemonsets:
            _end(informer)

    def daemonset_informer(self, namespace: str) -> Informer:
        """The DaemonSet watch of ``namespace``, shared by every controller there."""
        with self._lock:
            informer = self._daemonsets.get(namespace)
            if informer is None:
                # A client of its own, so that the watch ends at once when the namespace has
                # no resource left (not when the server next closes it, within 5 minutes).
                own = Kube(self.api_client, stop=threading.Event())
                informer = Informer(
                    own,
                    DAEMONSETS,
                    namespace,
                    None,
                    observe=lambda obj: self.daemonset_changed(obj, namespace),
                )
                self._daemonsets[namespace] = informer
        return informer

    def namespace_emptied(self, namespace: str) -> None:
        """No resource of ``namespace`` runs a DaemonSet any more: stop watching them there."""
        with self._lock:
            informer = self._daemonsets.pop(namespace, None)
        if informer is not None:
            _end(informer)

    # --- reading the cache ------------------------------------------------------------------

    def resources(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every resource in the cache, or those of ``namespace``."""
        return [
            obj
            for informer in self._resources
            if namespace is None or informer.namespace in ("", namespace)
            for obj in informer.items()
            if namespace is None or objects.namespace(obj) == namespace
        ]

    def resource(self, key: Key) -> dict[str, Any] | None:
        found = self._cached(key)
        # List items of a custom resource carry apiVersion and kind, watch events too; set
        # them anyway: the owner reference and Events are built from them.
        return None if found is None else {**found, "apiVersion": API_VERSION, "kind": KIND}

    def _cached(self, key: Key) -> dict[str, Any] | None:
        for informer in self._resources:
            if informer.namespace in ("", key[0]):
                found = informer.get_in(*key)
                if found is not None:
                    return found
        return None

    # --- which keys a change concerns ---------------------------------------------------------

    def resource_changed(self, resource: dict[str, Any] | None) -> None:
        if resource is None:  # (re)listed: any resource may have changed, or be gone
            with self._lock:
                seen = set(self._seen_generation)
            for key in {*self.known(), *seen, *(key_of(obj) for obj in self.resources())}:
                self.queue.add(key)
            return
        key = key_of(resource)
        self.queue.add(key)
        present = self._cached(key) is not None
        with self._lock:
            before = self._seen_generation.get(key)
            if present:
                self._seen_generation[key] = objects.generation(resource)
            else:
                self._seen_generation.pop(key, None)
        if not present or before != objects.generation(resource):
            # Created, deleted or edited: the DaemonSet name it claims may have changed, and
            # with it which resource of the namespace keeps a contested name.
            for peer in self.resources(key[0]):
                self.queue.add(key_of(peer))

    def daemonset_changed(self, daemonset: dict[str, Any] | None, namespace: str) -> None:
        if daemonset is None:  # (re)listed
            keys = {key_of(obj) for obj in self.resources(namespace)}
        else:
            keys = {
                (namespace, ref["name"])
                for ref in objects.owner_references(daemonset)
                if ref.get("kind") == KIND and ref.get("name")
            }
            if not keys:  # not a resource's (yet): the resources that want its name
                keys = self.wanting(namespace, objects.name(daemonset))
        for key in keys:
            self.queue.add(key)


def _end(informer: Informer) -> None:
    """Stop a DaemonSet informer and cut its watch (it has a client of its own)."""
    informer.end()
    informer.kube.stop.set()
    informer.kube.interrupt()
