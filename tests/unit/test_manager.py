"""The manager's workers and operator mode's keys: what a look's result does to the queue, a
failing look that never ends a worker, threads that do not grow with the keys, and which
resources a watched change puts in the queue."""

from __future__ import annotations

import threading

from imagepuller.config import load_config
from imagepuller.daemonset import build_daemonset
from imagepuller.health import Health, WorkerHealth
from imagepuller.manager import Manager, Result
from imagepuller.operator import Operator
from imagepuller.statuswriter import FAILURES_EVERY, POD_READERS, RolloutPods
from imagepuller.workqueue import WorkQueue
from tests.fakes import Clock
from tests.waiting import wait_until


def drain(queue):
    keys = []
    while (key := queue.get(timeout=0)) is not None:
        keys.append(key)
        queue.done(key)
    return sorted(keys)


def manager_of(results, clock):
    """A manager whose looks return (or raise) ``results`` one after the other."""
    queue = WorkQueue(clock, base_delay=2.0, max_delay=60.0)
    looks = iter(results)

    def reconcile(key):
        result = next(looks)
        if isinstance(result, Exception):
            raise result
        return result

    return Manager(reconcile, queue, workers=1, health=Health()), queue


def test_a_failed_look_is_tried_again_after_a_pause_that_doubles_and_a_success_resets_it():
    clock = Clock(0.0)
    manager, queue = manager_of(
        [Result(failed=True), RuntimeError("boom"), Result(requeue_after=5.0), Result()], clock
    )
    manager.process("a")
    assert queue.failures("a") == 1 and drain(queue) == []
    clock.now += 2.0  # the first pause
    assert drain(queue) == ["a"]
    manager.process("a")  # an unexpected error is a failure too
    assert queue.failures("a") == 2
    clock.now += 3.9
    assert drain(queue) == []  # the second pause is 4 s
    clock.now += 0.1
    assert drain(queue) == ["a"]
    manager.process("a")  # a success: the next failure starts from 2 s again
    assert queue.failures("a") == 0
    clock.now += 5.0
    assert drain(queue) == ["a"]  # requeued after the 5 s it asked for
    manager.process("a")  # nothing asked: back only when something it concerns changes
    clock.now += 1000.0
    assert drain(queue) == []


def test_a_look_that_raises_does_not_end_the_worker_and_threads_do_not_grow_with_keys():
    seen: list[str] = []
    lock = threading.Lock()

    def reconcile(key):
        with lock:
            seen.append(key)
            first = seen.count(key) == 1
        if key == "bad" and first:
            raise RuntimeError("one bad look")
        return Result()

    queue = WorkQueue(base_delay=0.001)
    before = threading.active_count()
    manager = Manager(reconcile, queue, workers=3, health=WorkerHealth())
    manager.start()
    try:
        for n in range(200):
            queue.add(f"key-{n}")
        queue.add("bad")
        wait_until(lambda: len(seen) == 202, 10, "every key looked at, and bad twice")
        assert threading.active_count() == before + 3
    finally:
        assert manager.stop(5.0)
    assert seen.count("bad") == 2


def test_a_worker_stuck_in_a_look_fails_liveness_though_the_others_progress():
    clock = Clock(0.0)
    health = WorkerHealth(stuck_after=60.0, clock=clock)
    stuck_started = threading.Event()

    def stuck():
        health.look_started()
        stuck_started.set()

    thread = threading.Thread(target=stuck, name="worker-7")
    thread.start()
    thread.join()
    assert stuck_started.is_set()
    clock.now += 61.0
    health.look_started()
    health.progress()  # this thread hears from the API; worker-7 does not
    alive, why = health.alive()
    assert not alive and why.startswith("worker-7: stuck")


# --- operator mode: which resources a change concerns -----------------------------------------


class ResourceCache:
    """The resources' watch-fed cache, as the operator reads it."""

    def __init__(self, *resources):
        self.namespace = ""
        self.objects = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in resources}

    def items(self):
        return list(self.objects.values())

    def get_in(self, namespace, name):
        return self.objects.get((namespace, name))


def resource(namespace, name, generation=1):
    return {
        "metadata": {"namespace": namespace, "name": name, "generation": generation},
        "spec": {"images": "a=quay.io/a:1", "daemonsetName": name},
    }


def operator_with(*resources):
    op = Operator(object(), identity="me", stop=threading.Event(), clock=Clock(0.0))
    op.watches._resources = [ResourceCache(*resources)]  # type: ignore[list-item]
    return op


def test_a_daemonset_change_concerns_its_owner_only():
    op = operator_with(resource("ns", "a"), resource("ns", "b"), resource("other", "a"))
    owned = {
        "metadata": {
            "namespace": "ns",
            "name": "a",
            "ownerReferences": [{"kind": "KubernetesImagePuller", "name": "a", "uid": "u"}],
        }
    }
    op.watches.daemonset_changed(owned, "ns")
    assert drain(op.queue) == [("ns", "a")]
    op.watches.daemonset_changed(None, "ns")  # relisted: every resource of that namespace
    assert drain(op.queue) == [("ns", "a"), ("ns", "b")]


def test_a_status_change_concerns_the_resource_and_a_new_generation_its_namespace_too():
    a, b = resource("ns", "a"), resource("ns", "b")
    op = operator_with(a, b, resource("other", "c"))
    op.watches.resource_changed(a)  # first seen: its claim on a name is new
    assert drain(op.queue) == [("ns", "a"), ("ns", "b")]
    op.watches.resource_changed({**a, "status": {"observedGeneration": 1}})
    assert drain(op.queue) == [("ns", "a")]  # the same generation: only itself
    edited = resource("ns", "a", generation=2)
    op.watches._resources[0].objects[("ns", "a")] = edited  # type: ignore[attr-defined]
    op.watches.resource_changed(edited)
    assert drain(op.queue) == [("ns", "a"), ("ns", "b")]
    del op.watches._resources[0].objects[("ns", "a")]  # type: ignore[attr-defined]
    op.watches.resource_changed(edited)  # deleted: the name it held may go to another
    assert drain(op.queue) == [("ns", "a"), ("ns", "b")]


# --- a rollout's pods: a few readers at once, the others go on with the last reading ---------


class SlowPods:
    """A pod list that blocks until released, counting the lists made."""

    def __init__(self):
        self.lists = 0
        self.release = threading.Event()

    def list_pods(self, namespace, selector):
        self.lists += 1
        assert self.release.wait(10)
        return []

    def list_events(self, namespace, selector):
        return []


def test_when_every_pod_reader_is_busy_a_look_goes_on_with_its_last_reading():
    clock, kube = Clock(0.0), SlowPods()
    pods = RolloutPods(kube, clock)  # type: ignore[arg-type]
    config = load_config({"IMAGES": "a=quay.io/a:1", "NAMESPACE": "ns"})
    daemonset = build_daemonset(config)
    daemonset["metadata"].update(uid="u", generation=1)
    kube.release.set()
    pods.read(("ns", "stale"), config, daemonset)  # a first reading, long ago
    clock.now += FAILURES_EVERY
    kube.release.clear()
    busy = [
        threading.Thread(target=pods.read, args=(("ns", f"r{n}"), config, daemonset))
        for n in range(POD_READERS)
    ]
    for thread in busy:
        thread.start()
    try:
        wait_until(lambda: kube.lists == 1 + POD_READERS, 10, "every reader busy")
        assert pods.read(("ns", "stale"), config, daemonset) == ([], 0)  # its last reading
        assert kube.lists == 1 + POD_READERS  # no list made for it
        assert ("ns", "stale") in pods.rolling  # looked at again soon, to read then
    finally:
        kube.release.set()
        for thread in busy:
            thread.join(10)
