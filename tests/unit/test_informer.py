"""The informer: list, then watch; list again when the watch expires or breaks."""

from __future__ import annotations

import threading

import pytest
from structlog.testing import capture_logs

from imagepuller.apierrors import Expired, Forbidden, NotFound, Stopped, Transient
from imagepuller.informer import MAX_RETRY_PAUSE, Informer, _Failures
from imagepuller.kube import DAEMONSETS, PULLERS


def obj(name, rv="1", ready=0):
    return {"metadata": {"name": name, "resourceVersion": rv}, "status": {"numberReady": ready}}


class ScriptedKube:
    """Lists pop from ``lists``, watches from ``watches`` (events, or an exception to raise);
    when both run out the stop event is set, which ends the informer's loop."""

    def __init__(self, lists, watches):
        self.stop = threading.Event()
        self.lists = list(lists)
        self.watches = list(watches)
        self.list_calls: list[dict] = []
        self.watch_versions: list[str] = []
        self.pauses = 0

        stop = self.stop
        outer = self

        class Pausing(threading.Event):
            def wait(self, timeout=None):
                outer.pauses += 1
                return stop.is_set()

        self.pause_event = Pausing()

    def list_objects(self, kind, namespace, *, field_selector=None, deadline=None):
        self.list_calls.append({"kind": kind, "namespace": namespace, "selector": field_selector})
        if not self.lists:
            self.stop.set()
            raise Stopped()
        item = self.lists.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def watch_objects(self, kind, namespace, version, *, field_selector=None, seconds=300):
        self.watch_versions.append(version)
        if not self.watches:
            self.stop.set()
            raise Stopped()
        item = self.watches.pop(0)
        if isinstance(item, Exception):
            raise item
        yield from item


def run(kube, name=None):
    """Run the informer's loop in this thread, recording the cache at every notify."""
    seen: list[dict] = []
    informer = Informer(
        kube,
        DAEMONSETS,
        "ns",
        lambda: seen.append({o["metadata"]["name"]: o for o in informer.items()}),
    )
    informer.name = name
    # The pause between attempts: counted, not slept.
    kube.stop.wait = kube.pause_event.wait  # type: ignore[method-assign]
    informer._run()
    return informer, seen


def test_lists_then_watches_from_the_lists_version_and_notifies_each_change():
    kube = ScriptedKube(
        lists=[([obj("a")], "10")],
        watches=[
            [
                ("BOOKMARK", {"metadata": {"resourceVersion": "11"}}),
                ("MODIFIED", obj("a", "12", ready=3)),
                ("ADDED", obj("b", "13")),
                ("DELETED", obj("a", "14")),
            ]
        ],
    )
    informer, seen = run(kube)
    assert kube.watch_versions[0] == "10"
    assert kube.watch_versions[1] == "14"  # the next watch resumes after the last event
    assert [sorted(cache) for cache in seen] == [["a"], ["a"], ["a", "b"], ["b"]]
    assert seen[1]["a"]["status"]["numberReady"] == 3  # a bookmark is not a change
    assert informer.has_synced()
    assert informer.get("a") is None and informer.get("b")["metadata"]["resourceVersion"] == "13"


@pytest.mark.parametrize("failure", [Expired("too old", status=410), Transient("reset")])
def test_an_expired_or_broken_watch_lists_again_after_a_pause(failure):
    kube = ScriptedKube(
        lists=[([obj("a")], "10"), ([obj("a", "20", ready=3)], "20")], watches=[failure]
    )
    informer, seen = run(kube)
    assert len(kube.list_calls) == 2  # listed again after the failed watch
    assert kube.pauses >= 1
    assert informer.get("a")["status"]["numberReady"] == 3


def test_a_list_that_is_refused_is_tried_again_and_nothing_is_cached():
    kube = ScriptedKube(
        lists=[Forbidden("denied", permission="list daemonsets.apps in namespace ns")], watches=[]
    )
    informer, seen = run(kube)
    assert not informer.has_synced() and seen == []
    assert len(kube.list_calls) == 2


def test_one_name_is_watched_with_a_field_selector():
    kube = ScriptedKube(lists=[([], "1")], watches=[])
    run(kube, name="settings")
    assert kube.list_calls[0]["selector"] == "metadata.name=settings"


# --- backing off while a watch keeps failing ------------------------------------------------


class TimedKube(ScriptedKube):
    """A ScriptedKube whose pauses are recorded and move a fake clock on by their length."""

    def __init__(self, lists, watches):
        super().__init__(lists, watches)
        self.now = 1000.0
        self.pause_lengths: list[float] = []
        stop = self.stop
        outer = self

        class Timed(threading.Event):
            def wait(self, timeout=None):
                outer.pause_lengths.append(timeout)
                outer.now += timeout or 0
                return stop.is_set()

        self.pause_event = Timed()


def run_timed(kube):
    informer = Informer(kube, PULLERS, "", lambda: None, clock=lambda: kube.now)
    kube.stop.wait = kube.pause_event.wait  # type: ignore[method-assign]
    with capture_logs() as logs:
        informer._run()
    return informer, logs


ABSENT = NotFound("the server could not find the requested resource", status=404)


def test_a_failing_list_backs_off_doubling_to_30_s_and_a_good_watch_resets_it():
    kube = TimedKube(
        lists=[ABSENT] * 8 + [([obj("a")], "10"), ABSENT],
        watches=[[("ADDED", obj("b", "11"))], Forbidden("no", permission="watch x")],
    )
    run_timed(kube)
    # Eight refusals (the CRD is not installed); then a list and a watch that delivered; then
    # the watch refused: the pauses start again from 1 s.
    assert kube.pause_lengths == [1, 2, 4, 8, 16, 30, 30, 30, 1, 2]


def test_the_same_failure_again_and_again_is_logged_once_then_every_few_minutes():
    kube = TimedKube(lists=[ABSENT] * 20, watches=[])
    _, logs = run_timed(kube)
    failed = [e for e in logs if e["event"] == "watch_failed"]
    # 20 failures over 481 s (1+2+4+8+16, then 30 s each): the first, and one 5 min later
    # that says how many were not logged.
    assert len(failed) == 2
    assert failed[0]["log_level"] == "warning" and "repeats" not in failed[0]
    assert failed[1]["repeats"] > 1
    assert sum(e.get("repeats", 1) for e in failed) <= 20


def test_a_different_failure_is_logged_at_once_and_recovery_is_said():
    other = Forbidden("denied", permission="list kubernetesimagepullers")
    kube = TimedKube(
        lists=[ABSENT, ABSENT, other, ([obj("a")], "10")], watches=[[("ADDED", obj("b", "11"))]]
    )
    _, logs = run_timed(kube)
    events = [e["event"] for e in logs]
    assert events == ["watch_failed", "watch_failed", "watch_recovered"]
    assert [e for e in logs if e["event"] == "watch_recovered"][0]["failures"] == 3


def test_the_pause_stays_at_its_maximum_however_long_the_failure_lasts():
    failures = _Failures("kubernetesimagepullers", "", lambda: 0.0)
    for _ in range(5000):  # 41 hours at 30 s
        failures.failed("watch_failed", "absent")
    assert failures.pause() == MAX_RETRY_PAUSE
