"""Metrics, /healthz and /readyz: the values follow what the controller saw, the liveness check
tells a stuck look from an idle one, and the endpoints answer over HTTP."""

from __future__ import annotations

import threading

import pytest

from imagepuller.apierrors import Invalid
from imagepuller.config import load_config
from imagepuller.endpoints import Endpoints
from imagepuller.health import Health
from imagepuller.metrics import PrometheusMetrics
from tests import fakes as controller
from tests.fakes import ENV, Clock, failing_pod
from tests.httpget import get

LABELS = {"namespace": "ns", "daemonset": "kubernetes-image-puller"}


@pytest.fixture
def metrics():
    return PrometheusMetrics()


def make(kube, clock, wall, metrics, health=None):
    return controller.make(kube, clock, wall, metrics=metrics, health=health or Health(clock=clock))


# --- health ----------------------------------------------------------------------------------


def test_idle_is_alive_and_a_silent_look_is_stuck(clock):
    health = Health(stuck_after=60, clock=clock)
    clock.now += 3600
    assert health.alive()[0]  # an hour idle between refreshes is healthy
    health.look_started()
    clock.now += 59
    assert health.alive()[0]
    health.progress()  # an answer from the API
    clock.now += 59
    assert health.alive()[0]
    clock.now += 2
    alive, why = health.alive()
    assert not alive and "61 s" in why and "60 s" in why
    health.look_ended()
    assert health.alive()[0]


def test_ready_only_after_a_look_succeeded(clock):
    health = Health(clock=clock)
    assert not health.ready()[0]
    health.set_ready()
    assert health.ready() == (True, "ok")
    health.set_not_ready("permission denied: the puller may not list daemonsets.apps")
    assert health.ready() == (False, "permission denied: the puller may not list daemonsets.apps")


# --- metrics from the controller -------------------------------------------------------------


def test_gauges_follow_the_daemonset_and_a_refresh_is_counted_with_its_time(
    kube, clock, wall, metrics
):
    controller = make(kube, clock, wall, metrics)
    controller.reconcile()
    kube.roll_out(nodes=4)
    controller.reconcile()
    assert metrics.value("imagepuller_nodes_desired", LABELS) == 4
    assert metrics.value("imagepuller_nodes_holding", LABELS) == 4
    assert metrics.value("imagepuller_images", LABELS) == 2
    # A create is no refresh; the counters are exported at 0 from the first sight, so that the
    # first refresh (or failure, or rejection) is an increase Prometheus can see.
    for counter in ("refreshes_started", "refreshes_failed", "config_rejections"):
        assert metrics.value(f"imagepuller_{counter}_total", LABELS) == 0
    wall.now += 3600
    controller.reconcile()  # the refresh
    assert metrics.value("imagepuller_refreshes_started_total", LABELS) == 1
    clock.now += 7
    kube.roll_out(nodes=4)
    controller.reconcile()
    assert metrics.value("imagepuller_refreshes_completed_total", LABELS) == 1
    assert metrics.value("imagepuller_last_refresh_timestamp_seconds", LABELS) == wall.now
    assert metrics.value("imagepuller_refresh_duration_seconds_sum", LABELS) == 7
    assert metrics.value("imagepuller_refreshes_failed_total", LABELS) == 0


def test_a_refresh_not_ready_in_time_counts_as_failed_with_the_reasons(kube, clock, wall, metrics):
    controller = make(kube, clock, wall, metrics)
    controller.reconcile()
    kube.roll_out()
    controller.reconcile()
    wall.now += 3600
    controller.reconcile()  # the refresh starts; a node cannot pull
    kube.pods = [failing_pod()]
    clock.now += 61
    controller.reconcile()
    assert metrics.value("imagepuller_refreshes_failed_total", LABELS) == 1
    failing = {**LABELS, "reason": "ErrImagePull"}
    assert metrics.value("imagepuller_pods_failing", failing) == 1
    node = failing_pod()["spec"]["nodeName"]
    assert metrics.value("imagepuller_node_failing", {**failing, "node": node}) == 1
    kube.roll_out()  # the node pulls after all
    controller.reconcile()
    assert metrics.value("imagepuller_pods_failing", failing) == 0
    assert metrics.value("imagepuller_node_failing", {**failing, "node": node}) is None
    assert metrics.value("imagepuller_refreshes_completed_total", LABELS) == 1


def test_a_rejected_configuration_is_counted(kube, clock, wall, metrics):
    controller = make(kube, clock, wall, metrics)
    controller.reconcile()
    kube.reject_dry_run = Invalid("spec.template.spec.affinity: Invalid value", status=422)
    controller.offer(load_config({**ENV, "IMAGES": "a=quay.io/a:2"}))
    controller.reconcile()
    assert metrics.value("imagepuller_config_rejections_total", LABELS) == 1


def test_every_api_answer_is_counted_and_taken_as_progress(clock):
    metrics = PrometheusMetrics()
    metrics.api_request("patch", "daemonsets.apps", "200", 0.01)
    metrics.api_request("watch", "daemonsets.apps", "200", 300)
    metrics.api_request("get", "deployments.apps", "error", 10)
    sample = {"verb": "patch", "resource": "daemonsets.apps", "code": "200"}
    assert metrics.value("imagepuller_api_requests_total", sample) == 1
    watch = {"verb": "watch", "resource": "daemonsets.apps"}
    assert metrics.value("imagepuller_api_request_duration_seconds_count", watch) is None
    get_error = {"verb": "get", "resource": "deployments.apps", "code": "error"}
    assert metrics.value("imagepuller_api_requests_total", get_error) == 1


def test_a_look_blocked_in_a_call_fails_healthz_and_recovers(kube, wall):
    """A create that never returns: the worker is stuck, /healthz says so."""
    clock = Clock(1000.0)
    health = Health(stuck_after=30, clock=clock)
    blocked, release = threading.Event(), threading.Event()
    create = kube.create_daemonset

    def hanging_create(body, *, dry_run=False):
        if not dry_run:
            blocked.set()
            release.wait(10)
        return create(body, dry_run=dry_run)

    kube.create_daemonset = hanging_create
    controller = make(kube, clock, wall, PrometheusMetrics(), health)
    worker = threading.Thread(target=controller.run, daemon=True)
    worker.start()
    try:
        assert blocked.wait(10)
        assert health.alive()[0]
        clock.now += 31
        alive, why = health.alive()
        assert not alive and "stuck" in why
    finally:
        release.set()
        controller.request_stop()
        worker.join(10)
    assert not worker.is_alive()
    assert health.alive()[0]


# --- the endpoints over HTTP -----------------------------------------------------------------


def test_the_endpoints_answer_over_http(clock):
    metrics, health = PrometheusMetrics(), Health(stuck_after=60, clock=clock)
    metrics.daemonset_observed("ns", "kubernetes-image-puller", desired=5, holding=4, images=3)
    endpoints = Endpoints("127.0.0.1", 0, metrics, health).start()
    base = f"http://127.0.0.1:{endpoints.port}"
    try:
        code, text = get(f"{base}/metrics")
        assert code == 200
        # The probes' answers at the time of the scrape: not ready yet, alive.
        assert "imagepuller_ready 0.0" in text and "imagepuller_alive 1.0" in text
        assert (
            'imagepuller_nodes_desired{daemonset="kubernetes-image-puller",namespace="ns"} 5.0'
            in text
        )
        assert "process_resident_memory_bytes" in text
        assert get(f"{base}/readyz")[0] == 503  # nothing looked at yet
        health.set_ready()
        assert get(f"{base}/readyz") == (200, "ok\n")
        assert get(f"{base}/healthz")[0] == 200
        health.look_started()
        clock.now += 61
        code, text = get(f"{base}/healthz")
        assert code == 503 and "stuck" in text
        text = get(f"{base}/metrics")[1]
        assert "imagepuller_alive 0.0" in text and "imagepuller_ready 1.0" in text
        assert get(f"{base}/other")[0] == 404
    finally:
        endpoints.stop()


# --- a deleted puller's series ---------------------------------------------------------------


def test_forget_removes_every_series_of_one_puller_and_keeps_the_others(metrics):
    other = {"namespace": "ns", "daemonset": "other"}
    for name in ("kubernetes-image-puller", "other"):
        metrics.daemonset_observed("ns", name, desired=3, holding=2, images=4)
        metrics.failing_pods("ns", name, {"ErrImagePull": 1, "FailedCreate": 2})
        metrics.refresh_started("ns", name)
        metrics.refresh_completed("ns", name, seconds=5, at=1000)
        metrics.refresh_failed("ns", name)
        metrics.config_rejected("ns", name)
        metrics.image_list_failed("ns", name)
    metrics.forget("ns", "kubernetes-image-puller")
    text = metrics.exposition()[0].decode()
    assert 'daemonset="kubernetes-image-puller"' not in text
    assert metrics.value("imagepuller_nodes_desired", other) == 3
    assert metrics.value("imagepuller_pods_failing", {**other, "reason": "FailedCreate"}) == 2
    assert metrics.value("imagepuller_refresh_duration_seconds_count", other) == 1
    metrics.forget("ns", "kubernetes-image-puller")  # twice, or never seen: nothing to do
    metrics.forget("elsewhere", "never-seen")
    # Seen again later (a resource of the same name): its series start afresh.
    metrics.failing_pods("ns", "kubernetes-image-puller", {"ImagePullBackOff": 1})
    again = metrics.exposition()[0].decode()
    assert again.count('daemonset="kubernetes-image-puller"') == 1


def test_failing_nodes_are_named_up_to_the_bound_and_dropped_when_they_recover(metrics):
    from imagepuller.metrics import NODES_NAMED

    nodes = {f"node-{n:02}": "ErrImagePull" for n in range(NODES_NAMED + 5)}
    nodes["node-00"] = "ImagePullBackOff"
    metrics.failing_pods("ns", "p", {"ErrImagePull": 14, "ImagePullBackOff": 1}, nodes)
    named = {"namespace": "ns", "daemonset": "p"}
    text = metrics.exposition()[0].decode()
    assert text.count("imagepuller_node_failing{") == NODES_NAMED  # the first by name
    assert metrics.value(
        "imagepuller_node_failing", {**named, "node": "node-00", "reason": "ImagePullBackOff"}
    )
    last = f"node-{NODES_NAMED + 4:02}"
    assert (
        metrics.value("imagepuller_node_failing", {**named, "node": last, "reason": "ErrImagePull"})
        is None
    )
    # node-00 recovers: its series goes, and the next node by name is named instead.
    del nodes["node-00"]
    metrics.failing_pods("ns", "p", {"ErrImagePull": 14}, nodes)
    text = metrics.exposition()[0].decode()
    assert text.count("imagepuller_node_failing{") == NODES_NAMED
    assert 'node="node-00"' not in text and f'node="node-{NODES_NAMED:02}"' in text
    metrics.forget("ns", "p")
    assert "imagepuller_node_failing{" not in metrics.exposition()[0].decode()


def test_forget_records_nothing_without_prometheus():
    from imagepuller.metrics import Metrics

    Metrics().forget("ns", "kubernetes-image-puller")
