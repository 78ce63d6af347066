"""Operator mode's decisions that need no cluster: who keeps a DaemonSet name, and a status
whose conditions keep their transition times while nothing changes."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from imagepuller.operator import Operator, Puller, _seconds, _status_body, daemonset_name


def resource(namespace, name, created, daemonset=None):
    spec = {"images": "a=quay.io/a:1"}
    if daemonset:
        spec["daemonsetName"] = daemonset
    return {
        "metadata": {"namespace": namespace, "name": name, "creationTimestamp": created},
        "spec": spec,
    }


def operator():
    return Operator(object(), identity="me", stop=threading.Event())


def test_the_older_resource_keeps_a_daemonset_name_and_only_the_newer_conflicts():
    verdict = operator()._judge(
        [
            resource("ns", "newer", "2026-11-28T10:00:01Z"),
            resource("ns", "older", "2026-11-28T10:00:00Z"),
            resource("ns", "apart", "2026-11-28T09:00:00Z", daemonset="other-cache"),
            resource("other", "same-name", "2026-11-28T11:00:00Z"),
        ]
    )
    assert verdict.conflicts == {("ns", "newer"): ("ns", "older")}
    assert set(verdict.resources) == {
        ("ns", "newer"),
        ("ns", "older"),
        ("ns", "apart"),
        ("other", "same-name"),
    }
    assert verdict.resources[("ns", "older")]["kind"] == "KubernetesImagePuller"
    assert verdict.resources[("ns", "older")]["apiVersion"] == "che.eclipse.org/v1alpha1"


def test_a_tie_in_creation_time_is_decided_by_name():
    verdict = operator()._judge(
        [resource("ns", "b", "2026-11-28T10:00:00Z"), resource("ns", "a", "2026-11-28T10:00:00Z")]
    )
    assert verdict.conflicts == {("ns", "b"): ("ns", "a")}


def test_names_that_strip_to_the_same_daemonset_conflict():
    verdict = operator()._judge(
        [
            resource("ns", "newer", "2026-11-28T10:00:01Z", daemonset=" cache"),
            resource("ns", "older", "2026-11-28T10:00:00Z", daemonset="cache"),
        ]
    )
    assert verdict.conflicts == {("ns", "newer"): ("ns", "older")}


def test_daemonset_name_defaults_as_the_setting_does():
    assert daemonset_name(resource("ns", "x", "t")) == "kubernetes-image-puller"
    assert daemonset_name(resource("ns", "x", "t", daemonset="cache")) == "cache"


def test_conditions_keep_their_transition_time_while_their_status_stays():
    first = _status_body(
        {},
        generation=1,
        conditions=[("Ready", False, "Pulling", "0/3"), ("Degraded", False, "AsExpected", "")],
        now=1_796_000_000.0,
    )
    later = _status_body(
        first,
        generation=1,
        conditions=[
            ("Ready", True, "AllImagesCached", "3/3"),
            ("Degraded", False, "AsExpected", ""),
        ],
        now=1_796_000_060.0,
    )
    by_type = {c["type"]: c for c in later["conditions"]}
    before = {c["type"]: c for c in first["conditions"]}
    assert by_type["Degraded"]["lastTransitionTime"] == before["Degraded"]["lastTransitionTime"]
    assert by_type["Ready"]["lastTransitionTime"] != before["Ready"]["lastTransitionTime"]
    assert by_type["Ready"]["lastTransitionTime"] == "2026-11-30T00:54:20Z"  # whole seconds


def test_times_are_whole_seconds_as_the_api_stores_them():
    assert _seconds("2026-11-28T20:00:00.123Z") == "2026-11-28T20:00:00Z"
    assert _seconds("2026-11-28T20:00:00Z") == "2026-11-28T20:00:00Z"


def test_a_controller_the_api_refused_is_started_again_only_for_a_new_generation(monkeypatch):
    op = operator()
    started: list[int] = []
    monkeypatch.setattr(
        op, "_start_puller", lambda key, config, generation: started.append(generation)
    )
    ended = threading.Thread(target=lambda: None)
    ended.start()
    ended.join()
    refused = SimpleNamespace(rejected="the API rejects the DaemonSet", openshift=None)
    op.pullers[("ns", "cache")] = Puller(refused, ended, 3)  # type: ignore[arg-type]
    cache = resource("ns", "cache", "2026-11-29T00:00:00Z")
    cache["metadata"]["generation"] = 3
    for _ in range(3):  # every pass of the operator
        op._ensure(("ns", "cache"), cache)
    assert started == []
    cache["metadata"]["generation"] = 4
    op._ensure(("ns", "cache"), cache)
    assert started == [4]


def test_shutdown_waits_for_every_controller_to_end():
    op = operator()
    stopped = threading.Event()

    def run():
        stopped.wait()
        threading.Event().wait(0.2)  # its own shutdown takes a moment after the stop

    thread = threading.Thread(target=run)
    controller = SimpleNamespace(request_stop=stopped.set, openshift=None)
    op.pullers[("ns", "cache")] = Puller(controller, thread, 1)  # type: ignore[arg-type]
    thread.start()
    op.shutdown()
    assert not thread.is_alive()
