"""Operator mode's decisions that need no cluster: who keeps a DaemonSet name, and a status
whose conditions keep their transition times while nothing changes."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from imagepuller.apitime import whole_seconds
from imagepuller.manager import Result
from imagepuller.operator import Operator
from imagepuller.pullerset import Puller
from imagepuller.resourcestatus import status_body
from imagepuller.statuswriter import StatusWriter
from tests.fakes import Clock


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
    verdict = operator().claims.judge(
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
    verdict = operator().claims.judge(
        [resource("ns", "b", "2026-11-28T10:00:00Z"), resource("ns", "a", "2026-11-28T10:00:00Z")]
    )
    assert verdict.conflicts == {("ns", "b"): ("ns", "a")}


def test_names_that_strip_to_the_same_daemonset_conflict():
    verdict = operator().claims.judge(
        [
            resource("ns", "newer", "2026-11-28T10:00:01Z", daemonset=" cache"),
            resource("ns", "older", "2026-11-28T10:00:00Z", daemonset="cache"),
        ]
    )
    assert verdict.conflicts == {("ns", "newer"): ("ns", "older")}


def daemonset_name(resource: dict) -> str | None:
    """The DaemonSet name the operator judges a resource to claim."""
    return operator().claims.claimed_name(("ns", "x"), resource)


def test_daemonset_name_defaults_as_the_setting_does():
    assert daemonset_name(resource("ns", "x", "t")) == "kubernetes-image-puller"
    assert daemonset_name(resource("ns", "x", "t", daemonset="cache")) == "cache"


def test_conditions_keep_their_transition_time_while_their_status_stays():
    first = status_body(
        {},
        generation=1,
        conditions=[("Ready", False, "Pulling", "0/3"), ("Degraded", False, "AsExpected", "")],
        now=1_796_000_000.0,
    )
    later = status_body(
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
    assert whole_seconds("2026-11-28T20:00:00.123Z") == "2026-11-28T20:00:00Z"
    assert whole_seconds("2026-11-28T20:00:00Z") == "2026-11-28T20:00:00Z"


def test_a_controller_the_api_refused_is_started_again_only_for_a_new_generation(monkeypatch):
    op = operator()
    started: list[int] = []
    monkeypatch.setattr(
        op.set, "_start", lambda key, config, generation: started.append(generation)
    )
    refused = SimpleNamespace(
        rejected="the API rejects the DaemonSet", openshift=None, request_stop=lambda: None
    )
    op.pullers[("ns", "cache")] = Puller(refused, 3, ended=True)  # type: ignore[arg-type]
    cache = resource("ns", "cache", "2026-11-29T00:00:00Z")
    cache["metadata"]["generation"] = 3
    for _ in range(3):  # every pass of the operator
        op.set.ensure(("ns", "cache"), cache)
    assert started == []
    cache["metadata"]["generation"] = 4
    op.set.ensure(("ns", "cache"), cache)
    assert started == [4]


def test_shutdown_waits_for_the_looks_underway():
    op = operator()
    started, finished = threading.Event(), threading.Event()

    def look(key):
        started.set()
        op.stop.wait()
        threading.Event().wait(0.2)  # its own end takes a moment after the stop
        finished.set()
        return Result()

    op.manager.reconcile = look
    op.manager.start()
    op.queue.add(("ns", "cache"))
    assert started.wait(10)
    op.request_stop()
    op.shutdown()
    assert finished.is_set()


# --- names are judged on the last valid spec ------------------------------------------------


def running(daemonset: str) -> Puller:
    """A puller whose controller runs with DaemonSet ``daemonset``."""
    controller = SimpleNamespace(
        config=SimpleNamespace(daemonset_name=daemonset), rejected=None, openshift=None
    )
    return Puller(controller, 1)  # type: ignore[arg-type]


def test_an_invalid_edit_of_an_older_resource_takes_no_name_from_a_newer_one():
    op = operator()
    op.pullers[("ns", "older")] = running("cache-a")
    older = resource("ns", "older", "2026-11-28T10:00:00Z", daemonset="cache-b")
    older["spec"]["cachingMemoryLimit"] = "lots"  # invalid: nothing of it applies
    newer = resource("ns", "newer", "2026-11-28T10:00:01Z", daemonset="cache-b")
    verdict = op.claims.judge([older, newer])
    assert verdict.conflicts == {}
    # The older resource's valid spec still keeps its own name against a third.
    third = resource("ns", "third", "2026-11-28T10:00:02Z", daemonset="cache-a")
    assert op.claims.judge([older, newer, third]).conflicts == {("ns", "third"): ("ns", "older")}


def test_a_resource_that_never_had_a_valid_spec_claims_no_name():
    op = operator()
    broken = resource("ns", "broken", "2026-11-28T10:00:00Z")
    broken["spec"]["cachingMemoryLimit"] = "lots"
    newer = resource("ns", "newer", "2026-11-28T10:00:01Z")
    assert op.claims.judge([broken, newer]).conflicts == {}


# --- the status: what is so, written when the stored one differs ---------------------------


class StatusApi:
    """The status subresource's writes, each making a new resourceVersion."""

    def __init__(self):
        self.patches: list[dict] = []

    def merge_patch(self, kind, namespace, name, patch, *, subresource=""):
        assert subresource == "status"
        self.patches.append(patch["status"])
        return {"metadata": {"resourceVersion": str(100 + len(self.patches))}}


def stored(status: dict | None, version: str) -> dict:
    body = resource("ns", "cache", "2026-11-28T10:00:00Z")
    body["metadata"]["resourceVersion"] = version
    if status is not None:
        body["status"] = status
    return body


def test_a_status_written_by_someone_else_is_corrected():
    api, clock = StatusApi(), Clock(0.0)
    writer = StatusWriter(api, clock)  # type: ignore[arg-type]
    key, truth = ("ns", "cache"), {"observedGeneration": 1, "conditions": []}
    writer.write(key, stored(None, "5"), truth)
    assert api.patches == [truth]
    writer.write(key, stored(None, "5"), truth)  # the cache has not seen our write yet
    writer.write(key, stored(truth, "101"), truth)  # now it has
    assert len(api.patches) == 1
    forged = {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}
    clock.now = 1e9  # past the minimum interval between two writes
    writer.write(key, stored(forged, "102"), truth)
    assert api.patches == [truth, truth]  # corrected


def daemonset(images=2, nodes=3):
    return {
        "metadata": {"generation": 1},
        "spec": {
            "template": {
                "metadata": {},
                "spec": {"containers": [{"name": f"c{n}"} for n in range(images)]},
            }
        },
        "status": {
            "observedGeneration": 1,
            "desiredNumberScheduled": nodes,
            "updatedNumberScheduled": nodes,
            "numberAvailable": nodes,
        },
    }


def observing(observed, *, current=True, conflict=None) -> Puller:
    controller = SimpleNamespace(
        last_observed=observed,
        observed_current=current,
        conflict=conflict,
        rejected=None,
        refused=None,
        refused_by_api=False,
        applied_tag=1,
        last_failures=[],
        config=SimpleNamespace(kip_image="quay.io/kip:1", daemonset_name="cache"),
    )
    return Puller(controller, 1)  # type: ignore[arg-type]


def conditions(status: dict) -> dict:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_ready_only_when_the_daemonset_has_this_specs_template():
    op = operator()
    key, cache = ("ns", "cache"), stored(None, "1")
    op.pullers[key] = observing(daemonset(), current=True)
    assert conditions(op._status(key, cache, None))["Ready"] == ("True", "AllImagesCached")
    op.pullers[key] = observing(daemonset(), current=False)  # rolled out, but an older template
    status = op._status(key, cache, None)
    assert conditions(status)["Ready"] == ("False", "Updating")
    assert conditions(status)["Progressing"][0] == "True"


def test_a_daemonset_another_object_owns_is_a_name_conflict_in_the_status():
    op = operator()
    key = ("ns", "cache")
    message = "DaemonSet cache in ns (uid u) is owned by Deployment kubernetes-image-puller"
    op.pullers[key] = observing(None, conflict=message)
    status = op._status(key, stored(None, "1"), None)
    assert conditions(status)["Ready"] == ("False", "NameConflict")
    assert status["conditions"][0]["message"] == message


def test_a_newer_generation_the_api_refuses_is_observed_and_reported_not_claimed_ready():
    op = operator()
    key = ("ns", "cache")
    puller = observing(daemonset(), current=True)
    puller.generation = 2  # offered to the controller; the API refused it
    puller.controller.refused = (2, "the API rejects the DaemonSet: affinity: Required value")
    puller.controller.refused_by_api = True
    cache = stored(None, "1")
    cache["metadata"]["generation"] = 2
    op.pullers[key] = puller
    status = op._status(key, cache, None)
    by_type = {c["type"]: c for c in status["conditions"]}
    assert status["observedGeneration"] == 2
    assert (by_type["Degraded"]["status"], by_type["Degraded"]["reason"]) == ("True", "InvalidSpec")
    assert "Required value" in by_type["Degraded"]["message"]
    assert by_type["Degraded"]["observedGeneration"] == 2
    # Ready speaks of what runs, generation 1's DaemonSet, and says which generation it is.
    assert (by_type["Ready"]["status"], by_type["Ready"]["observedGeneration"]) == ("True", 1)
