"""In-memory fakes of what the controller talks to, for its unit tests (test_controller,
test_controller_lists, test_events, test_observability): the API (``FakeKube``, which also plays
the DaemonSet controller and the kubelets with ``roll_out``), a watch cache that can lag
(``FakeInformer``), a settable clock, and ``make`` to build a controller on them."""

from __future__ import annotations

import itertools
import threading

from imagepuller.apierrors import Conflict
from imagepuller.config import load_config
from imagepuller.controller import Controller
from imagepuller.kube import EVENTS_V1

ENV = {
    "IMAGES": "a=quay.io/a:1;b=quay.io/b:1",
    "CACHING_INTERVAL_HOURS": "1",
    "READY_TIMEOUT": "60s",
    "NAMESPACE": "ns",
}
NAME = "kubernetes-image-puller"
ME = "me/1"
CONTROLLER = "imagepuller.io/controller"
REFRESHED = "imagepuller.io/refreshed-at"
SPEC_HASH = "imagepuller.io/spec-hash"


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


class FakeKube:
    """The API calls the controller makes, against in-memory DaemonSets."""

    def __init__(self):
        self.stop = threading.Event()
        self.objects: dict[str, dict] = {}
        self.deployment: dict | None = None
        self.writes: list[tuple[str, str]] = []  # (verb, name)
        self.dry_runs: list[dict] = []
        self.reject_dry_run: Exception | None = None
        self.fail_next: list[Exception] = []
        self.pods: list[dict] = []
        self.events: list[dict] = []
        self.recorded_events: list[dict] = []  # Events the controller created
        self.stale: dict[str, dict | None] = {}
        self._uids = (f"uid-{n}" for n in itertools.count(1))
        self._versions = itertools.count(1)

    def _maybe_fail(self):
        if self.fail_next:
            raise self.fail_next.pop(0)

    def _stored(self, body, uid, generation):
        obj = {
            **body,
            "metadata": {
                **body["metadata"],
                "uid": uid,
                "generation": generation,
                "resourceVersion": str(next(self._versions)),
            },
            "status": {},
        }
        self.objects[body["metadata"]["name"]] = obj
        return obj

    def is_openshift(self):
        return False

    def interrupt(self):
        self.interrupted = True

    def get_deployment(self, namespace, name):
        return self.deployment

    def get_daemonset(self, namespace, name):
        return self.objects.get(name)

    def create_daemonset(self, body, *, dry_run=False):
        if dry_run:
            self.dry_runs.append(body)
            if self.reject_dry_run:
                raise self.reject_dry_run
            return body
        self._maybe_fail()
        if body["metadata"]["name"] in self.objects:
            raise Conflict("already exists", status=409)
        self.writes.append(("create", body["metadata"]["name"]))
        return self._stored(body, next(self._uids), 1)

    def replace_daemonset(self, body):
        self._maybe_fail()
        name = body["metadata"]["name"]
        old = self.objects[name]
        if body["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified", status=409)
        self.writes.append(("replace", name))
        generation = old["metadata"]["generation"] + (old["spec"] != body["spec"])
        return self._stored(body, old["metadata"]["uid"], generation)

    def patch_daemonset(self, namespace, name, patch, *, uid=None):
        self._maybe_fail()
        old = self.objects[name]
        if uid and old["metadata"]["uid"] != uid:
            raise Conflict("Precondition failed: UID", status=409)
        self.writes.append(("patch", name))
        merged = _merge(old, patch)
        merged["metadata"]["generation"] += merged["spec"] != old["spec"]
        merged["metadata"]["resourceVersion"] = str(next(self._versions))  # as every write
        self.objects[name] = merged
        return merged

    def delete_daemonset(self, namespace, name, *, uid=None, foreground=True, timeout=None):
        self._maybe_fail()
        self.writes.append(("delete" if foreground else "delete-background", name))
        obj = self.objects.get(name)
        if obj is None:
            return False
        if foreground:
            obj["metadata"]["deletionTimestamp"] = "2026-11-28T00:00:00Z"
        else:
            del self.objects[name]
        return True

    def list_pods(self, namespace, label_selector):
        return self.pods

    def list_events(self, namespace, field_selector):
        return self.events

    # Events (events.k8s.io) are the only objects the controller creates or patches generically.
    def create_object(self, kind, namespace, body):
        assert kind == EVENTS_V1
        created = {
            **body,
            "metadata": {**body["metadata"], "name": f"ev-{len(self.recorded_events)}"},
        }
        self.recorded_events.append(created)
        return created

    def merge_patch(self, kind, namespace, name, patch, *, subresource=""):
        assert (kind, subresource) == (EVENTS_V1, "")
        (event,) = [e for e in self.recorded_events if e["metadata"]["name"] == name]
        event.update(patch)
        return event

    # --- what the cluster does -------------------------------------------------------------

    def roll_out(self, name=NAME, nodes=3):
        """The DaemonSet controller and the kubelets: every node runs the current template."""
        obj = self.objects[name]
        obj["status"] = {
            "observedGeneration": obj["metadata"]["generation"],
            "desiredNumberScheduled": nodes,
            "updatedNumberScheduled": nodes,
            "numberAvailable": nodes,
            "numberReady": nodes,
        }

    def finish_deletion(self, name=NAME):
        del self.objects[name]


def _merge(target, patch):
    result = dict(target)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


class FakeInformer:
    def __init__(self, kube, kind, namespace, notify, name=None):
        self.kube = kube

    def start(self):
        return self

    def end(self):
        pass

    def has_synced(self):
        return True

    def get(self, name):
        # ``stale``: what the watch had delivered before the last write, if it lags behind.
        if name in self.kube.stale:
            return self.kube.stale[name]
        return self.kube.objects.get(name)


def make(kube, clock, wall, env=None, identity=ME, *, base=ENV, **parts):
    """A controller on the fake API; ``parts``: more of the Controller's (lists, metrics...)."""
    return Controller(
        load_config({**base, **(env or {})}),
        kube,
        stop=kube.stop,
        clock=clock,
        wall=wall,
        identity=identity,
        informer=FakeInformer,
        **parts,
    )


def events(logs, name):
    return [entry for entry in logs if entry["event"] == name]


def ds(kube):
    return kube.objects[NAME]


def failing_pod(node="node-1", container="a", image="quay.io/a:1", reason="ErrImagePull"):
    """A pod whose container cannot pull, as the kubelet reports it."""
    return {
        "metadata": {"name": "p1"},
        "spec": {"nodeName": node, "containers": [{"name": container, "image": image}]},
        "status": {
            "containerStatuses": [
                {"name": container, "state": {"waiting": {"reason": reason, "message": "x"}}}
            ]
        },
    }


def created_and_ready(controller, kube):
    """The first looks: the DaemonSet is created, then every node runs its pod."""
    controller.reconcile()
    kube.roll_out()
    controller.reconcile()
