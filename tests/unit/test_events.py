"""Events (events.k8s.io/v1): what the controller records, on which object, and a repeat
counted on the first Event's series instead of a new one."""

from __future__ import annotations

import pytest

from imagepuller.apierrors import Forbidden, NotFound
from imagepuller.apitime import micro_time
from imagepuller.events import REPORTING_CONTROLLER, EventRecorder
from tests.fakes import Clock, FakeKube, failing_pod, make

DEPLOYMENT = {
    "metadata": {"name": "kubernetes-image-puller", "namespace": "ns", "uid": "dep-uid"},
}
ABOUT = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x", "namespace": "ns", "uid": "u"}


def test_a_repeat_updates_the_series_of_the_first_event():
    kube, wall = FakeKube(), Clock(1_796_000_000.0)
    events = EventRecorder(kube, "host/1", wall)
    events.record(ABOUT, warning=False, reason="Ready", action="Pull", note="All 2 images on 3/3")
    wall.now += 3600
    events.record(ABOUT, warning=False, reason="Ready", action="Pull", note="All 2 images on 3/3")
    events.record(ABOUT, warning=False, reason="Ready", action="Pull", note="All 2 images on 3/3")
    (event,) = kube.recorded_events
    assert event["series"] == {"count": 3, "lastObservedTime": micro_time(wall.now)}
    assert event["eventTime"] == micro_time(wall.now - 3600)
    assert event["reportingController"] == REPORTING_CONTROLLER
    assert event["reportingInstance"] == "host/1"
    assert event["regarding"] == ABOUT and event["type"] == "Normal"
    # A different note is a different report.
    events.record(ABOUT, warning=False, reason="Ready", action="Pull", note="All 2 images on 4/4")
    assert len(kube.recorded_events) == 2


def test_a_repeat_of_an_event_the_api_dropped_creates_a_new_one():
    kube = FakeKube()
    events = EventRecorder(kube, "host/1")
    events.record(ABOUT, warning=True, reason="NotReady", action="Pull", note="n")

    def gone(kind, namespace, name, patch, *, subresource=""):
        raise NotFound("events.events.k8s.io not found", status=404)

    kube.merge_patch = gone
    events.record(ABOUT, warning=True, reason="NotReady", action="Pull", note="n")
    assert len(kube.recorded_events) == 2
    assert "series" not in kube.recorded_events[1]


def test_an_event_that_cannot_be_recorded_is_logged_not_raised():
    kube = FakeKube()

    def forbidden(kind, namespace, body):
        raise Forbidden("no", permission="create events.events.k8s.io in namespace ns")

    kube.create_object = forbidden
    EventRecorder(kube).record(ABOUT, warning=False, reason="Ready", action="Pull", note="n")


def test_the_controller_reports_on_its_deployment_and_aggregates_hourly_repeats():
    kube, clock, wall = FakeKube(), Clock(1000.0), Clock(1_796_000_000.0)
    kube.deployment = DEPLOYMENT
    controller = make(kube, clock, wall)
    controller.reconcile()
    kube.roll_out()
    controller.reconcile()
    for _ in range(3):  # three hourly refreshes, each ready again
        wall.now += 3600
        controller.reconcile()
        kube.roll_out()
        controller.reconcile()
    by_reason = {e["reason"]: e for e in kube.recorded_events}
    assert sorted(by_reason) == ["Created", "Ready", "Refreshing"]
    assert len(kube.recorded_events) == 3  # not one per refresh
    assert by_reason["Ready"]["series"]["count"] == 4
    assert by_reason["Refreshing"]["series"]["count"] == 3
    assert by_reason["Ready"]["note"] == "All 2 images held on 3/3 nodes"
    for event in kube.recorded_events:
        assert event["regarding"]["kind"] == "Deployment"
        assert event["regarding"]["uid"] == "dep-uid"
    # Deleted from outside: a Warning, and it is recreated.
    del kube.objects["kubernetes-image-puller"]
    controller.reconcile()
    deleted = [e for e in kube.recorded_events if e["reason"] == "DaemonSetDeleted"]
    assert deleted and deleted[0]["type"] == "Warning"


def test_not_ready_after_the_timeout_is_a_warning_naming_node_image_and_reason():
    kube, clock, wall = FakeKube(), Clock(1000.0), Clock(1_796_000_000.0)
    controller = make(kube, clock, wall)
    controller.reconcile()
    kube.pods = [failing_pod()]
    clock.now += 61
    controller.reconcile()
    (warning,) = [e for e in kube.recorded_events if e["reason"] == "NotReady"]
    assert warning["type"] == "Warning"
    # Without a Deployment the Event is about the DaemonSet.
    assert warning["regarding"]["kind"] == "DaemonSet"
    assert "node-1 quay.io/a:1: ErrImagePull" in warning["note"]


@pytest.mark.parametrize(
    "text", ["é" * 2000, "a" + "€" * 1500, "🙂" * 900, "x" * 5000, "?" + "ø" * 700]
)
def test_a_long_note_is_cut_to_the_apis_1024_bytes_without_splitting_a_character(text):
    kube = FakeKube()
    events = EventRecorder(kube, "host/1")
    events.record(ABOUT, warning=True, reason="NotReady", action="Pull", note=text)
    (event,) = kube.recorded_events
    note = event["note"]
    assert len(note.encode()) <= 1024
    assert note.endswith(" ...")
    assert text.startswith(note[: -len(" ...")])  # a prefix, whole characters only
    assert len(note.encode()) > 1000  # cut near the limit, not far below it


def test_a_note_with_a_lone_surrogate_is_recorded_with_a_question_mark():
    kube = FakeKube()
    note = "file \udcff" + "ø" * 700
    EventRecorder(kube).record(ABOUT, warning=True, reason="NotReady", action="Pull", note=note)
    (event,) = kube.recorded_events
    assert event["note"].startswith("file ?ø") and len(event["note"].encode()) <= 1024


def test_a_note_within_the_limit_is_kept_whole():
    kube = FakeKube()
    note = "ü" * 512  # 1024 bytes exactly
    EventRecorder(kube).record(ABOUT, warning=True, reason="NotReady", action="Pull", note=note)
    assert kube.recorded_events[0]["note"] == note
