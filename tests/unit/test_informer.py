"""The informer: list, then watch; list again when the watch expires or breaks; and WakeUp."""

from __future__ import annotations

import threading

import pytest

from imagepuller.informer import Informer, WakeUp
from imagepuller.kube import DAEMONSETS, Expired, Forbidden, Stopped, Transient


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


def test_wake_up_keeps_a_poke_that_came_while_working():
    stop = threading.Event()
    wake = WakeUp(stop)
    wake.poke()
    assert wake.wait(5) is True  # at once
    assert wake.wait(0.05) is False  # consumed
    stop.set()
    assert wake.wait(None) is False  # a stop ends even an open-ended wait
