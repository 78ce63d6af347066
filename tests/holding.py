"""Which nodes hold the images: sampled from the API, or followed event by event.

A node holds the images when a pod of the DaemonSet runs there, is Ready (every image
container started, so every image is on the node) and is not being deleted.
``HoldingSampler`` lists the pods every ``interval`` seconds (the benchmark's view, cheap on
many nodes); ``HoldingWatcher`` follows every change of every pod through a watch and records
the holding nodes after each one, so even a gap shorter than any polling interval is seen.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kubernetes import client, watch


def holding_nodes(pods: list[Any]) -> set[str]:
    nodes = set()
    for pod in pods:
        if pod.metadata.deletion_timestamp is not None or not pod.spec.node_name:
            continue
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        if ready:
            nodes.add(pod.spec.node_name)
    return nodes


class HoldingSampler(threading.Thread):
    """Samples, until ``stop()``, the set of nodes holding the images; ``samples`` keeps
    (monotonic time, holding nodes) pairs."""

    def __init__(self, api_client: Any, namespace: str, selector: str, interval: float = 0.1):
        super().__init__(daemon=True)
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.selector = selector
        self.interval = interval
        self.samples: list[tuple[float, set[str]]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items
            self.samples.append((time.monotonic(), holding_nodes(pods)))
            self._halt.wait(self.interval)

    def stop(self) -> list[tuple[float, set[str]]]:
        self._halt.set()
        self.join(timeout=30)
        return self.samples

    def fractions(self, nodes: set[str]) -> list[float]:
        """For each sample, the fraction of ``nodes`` holding the images."""
        return [len(held & nodes) / len(nodes) for _, held in self.samples] if nodes else []


def _holds(pod: Any) -> bool:
    return bool(holding_nodes([pod]))


class HoldingWatcher(threading.Thread):
    """Lists the pods, then watches them; ``samples`` has the holding nodes after the list
    and after every event, in the order the API server sent them."""

    def __init__(self, api_client: Any, namespace: str, selector: str):
        super().__init__(daemon=True)
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.selector = selector
        self.samples: list[tuple[float, set[str]]] = []
        self._pods: dict[str, tuple[str, bool]] = {}  # pod uid -> (node, holds)
        self._halt = threading.Event()
        self._listed = threading.Event()
        self.error: BaseException | None = None

    def start_and_wait(self) -> HoldingWatcher:
        self.start()
        if not self._listed.wait(30):
            raise AssertionError("the pod list for the holding watch did not come within 30s")
        return self

    def _record(self) -> None:
        held = {node for node, holds in self._pods.values() if holds}
        self.samples.append((time.monotonic(), held))

    def run(self) -> None:
        try:
            # Any: the client's model types make every field optional.
            listed: Any = self.core.list_namespaced_pod(
                self.namespace, label_selector=self.selector
            )
            for pod in listed.items:
                self._pods[pod.metadata.uid] = (pod.spec.node_name, _holds(pod))
            self._record()
            self._listed.set()
            version = listed.metadata.resource_version
            while not self._halt.is_set():
                for event in watch.Watch().stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    label_selector=self.selector,
                    resource_version=version,
                    timeout_seconds=1,
                ):
                    pod = event["object"]
                    version = pod.metadata.resource_version
                    if event["type"] == "DELETED":
                        self._pods.pop(pod.metadata.uid, None)
                    else:
                        self._pods[pod.metadata.uid] = (pod.spec.node_name, _holds(pod))
                    self._record()
        except BaseException as err:  # noqa: BLE001 - reported by stop()
            self.error = err
            self._listed.set()

    def stop(self) -> list[tuple[float, set[str]]]:
        self._halt.set()
        self.join(timeout=30)
        if self.error is not None:
            raise AssertionError(f"the holding watch failed: {self.error!r}")
        return self.samples

    def fractions(self, nodes: set[str]) -> list[float]:
        return [len(held & nodes) / len(nodes) for _, held in self.samples] if nodes else []
