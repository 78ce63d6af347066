"""The reconciler's executor, driven step by step against in-memory objects: no cluster.

Each test calls ``reconcile()`` as the watches would, changing the fake cluster in between
(pods becoming ready, someone deleting the DaemonSet, another puller taking it over), and
asserts on the objects the fake API holds and on the logged events.
"""

from __future__ import annotations

import copy
import threading

import pytest
from structlog.testing import capture_logs

from imagepuller.apierrors import (
    ConfigRejected,
    Conflict,
    DaemonSetInTheWay,
    Forbidden,
    Invalid,
    NamespaceTerminating,
    Transient,
)
from imagepuller.apitime import format_time, parse_time
from imagepuller.config import load_config
from imagepuller.controller import Controller
from imagepuller.daemonset import build_daemonset
from imagepuller.ownership import classify
from tests.fakes import (
    CONTROLLER,
    ENV,
    ME,
    NAME,
    REFRESHED,
    SPEC_HASH,
    FakeInformer,
    created_and_ready,
    ds,
    events,
    failing_pod,
    make,
)


def is_ours(existing, config, *, created_uid=None):
    """Whose, for a puller with no owner object: the one rule of ownership.classify."""
    return classify(existing, config, owner=None, created_uid=created_uid).ours


@pytest.fixture
def controller(kube, clock, wall):
    return make(kube, clock, wall)


# --- create, follow, refresh -----------------------------------------------------------------


def test_creates_after_a_dry_run_and_reports_ready(controller, kube, clock):
    with capture_logs() as logs:
        assert controller.reconcile() is not None  # READY_TIMEOUT is being followed
        assert kube.writes == [("create", NAME)]
        assert kube.dry_runs and kube.dry_runs[0]["metadata"]["name"].endswith("-dry-run")
        created = ds(kube)
        annotations = created["metadata"]["annotations"]
        assert annotations[CONTROLLER] == ME and annotations[SPEC_HASH]
        assert annotations[REFRESHED] == "2026-11-28T20:00:00.000Z"
        assert created["spec"]["template"]["metadata"]["annotations"][REFRESHED] == (
            "2026-11-28T20:00:00.000Z"
        )
        clock.now += 4
        kube.roll_out()
        assert controller.reconcile() == pytest.approx(3600)  # next: the refresh
    (ready,) = events(logs, "daemonset_ready")
    assert (ready["ready"], ready["desired"], ready["seconds"]) == (3, 3, 4)
    assert events(logs, "daemonset_created")[0]["uid"] == "uid-1"


def test_a_cache_that_lags_behind_our_own_writes_is_not_acted_on(controller, kube, clock, wall):
    kube.stale[NAME] = None  # the watch has not delivered the ADDED event yet
    with capture_logs() as logs:
        controller.reconcile()
        assert controller.reconcile() == pytest.approx(0.2)
        assert kube.writes == [("create", NAME)]  # not created twice
        del kube.stale[NAME]
        kube.roll_out()
        controller.reconcile()
        wall.now += 3600
        kube.stale[NAME] = copy.deepcopy(ds(kube))  # rolled out, before the refresh's patch
        controller.reconcile()  # the refresh
        controller.reconcile()
        assert not events(logs, "refresh_complete")  # the stale copy is not taken for its end
        del kube.stale[NAME]
        kube.roll_out()
        controller.reconcile()
    assert not events(logs, "daemonset_deleted_externally")
    assert [e["event"] for e in logs if e["event"].startswith("refresh")] == [
        "refresh_due",
        "refresh_started",
        "refresh_complete",
    ]


def test_rolling_refresh_changes_the_template_not_the_daemonset(controller, kube, clock, wall):
    created_and_ready(controller, kube)
    wall.now += 3600
    with capture_logs() as logs:
        controller.reconcile()
        assert kube.writes[-1] == ("patch", NAME)
        refreshed = ds(kube)
        assert refreshed["metadata"]["uid"] == "uid-1"  # the same DaemonSet: no node emptied
        assert refreshed["metadata"]["generation"] == 2
        assert refreshed["spec"]["template"]["metadata"]["annotations"][REFRESHED] == (
            "2026-11-28T21:00:00.000Z"
        )
        assert refreshed["metadata"]["annotations"][REFRESHED] == "2026-11-28T21:00:00.000Z"
        # Mid-rollout the old pods are ready, but that is not the end of the refresh.
        refreshed["status"] = {**refreshed["status"], "updatedNumberScheduled": 1}
        controller.reconcile()
        assert not events(logs, "refresh_complete")
        kube.roll_out()
        controller.reconcile()
    assert [e["event"] for e in logs if e["event"].startswith("refresh")] == [
        "refresh_due",
        "refresh_started",
        "refresh_complete",
    ]
    assert len([w for w in kube.writes if w[0] == "create"]) == 1


def test_recreate_strategy_deletes_then_creates(kube, clock, wall):
    controller = make(kube, clock, wall, {"REFRESH_STRATEGY": "recreate"})
    created_and_ready(controller, kube)
    wall.now += 3600
    with capture_logs() as logs:
        controller.reconcile()
        assert kube.writes[-1] == ("delete", NAME)  # foreground, as the Go original
        controller.reconcile()  # still being deleted: wait
        assert kube.writes[-1] == ("delete", NAME)
        kube.finish_deletion()
        controller.reconcile()
    assert kube.writes[-1] == ("create", NAME)
    assert ds(kube)["metadata"]["uid"] == "uid-2"
    assert [e["event"] for e in logs if e["event"].startswith("daemonset_")] == [
        "daemonset_deleting",
        "daemonset_deleted",
        "daemonset_created",
    ]
    assert events(logs, "refresh_due")
    assert not events(logs, "daemonset_deleted_externally")


def test_digest_pinned_images_are_not_pulled_again(kube, clock, wall):
    digest = "quay.io/a@sha256:" + "a" * 64
    controller = make(kube, clock, wall, {"IMAGES": f"pinned={digest};tag=quay.io/b:1"})
    controller.reconcile()
    containers = {c["name"]: c for c in ds(kube)["spec"]["template"]["spec"]["containers"]}
    assert containers["pinned"]["imagePullPolicy"] == "IfNotPresent"
    assert containers["tag"]["imagePullPolicy"] == "Always"


def test_not_ready_after_the_timeout_names_node_image_and_reason_and_carries_on(
    controller, kube, clock
):
    controller.reconcile()
    kube.pods = [failing_pod()]
    with capture_logs() as logs:
        assert controller.reconcile() == pytest.approx(60)
        clock.now += 60
        controller.reconcile()
        controller.reconcile()  # reported once
        kube.roll_out()
        controller.reconcile()
    (summary,) = events(logs, "daemonset_not_ready")
    assert summary["timeout_seconds"] == 60
    (failure,) = events(logs, "image_not_cached")
    assert (failure["node"], failure["image"], failure["reason"]) == (
        "node-1",
        "quay.io/a:1",
        "ErrImagePull",
    )
    assert events(logs, "daemonset_ready")[0]["late"] is True


def test_a_node_that_joins_is_followed_and_readiness_reported_again(controller, kube):
    controller.reconcile()
    kube.roll_out()
    with capture_logs() as logs:
        controller.reconcile()
        kube.roll_out(nodes=4)
        ds(kube)["status"]["numberAvailable"] = 3
        controller.reconcile()
        kube.roll_out(nodes=4)
        controller.reconcile()
    assert [(e["ready"], e["desired"]) for e in events(logs, "daemonset_ready")] == [(3, 3), (4, 4)]
    assert (3, 4) in [(e["ready"], e["desired"]) for e in events(logs, "daemonset_progress")]


# --- adoption ----------------------------------------------------------------------------------


def left_by_an_earlier_process(kube, env=None, refreshed="2026-11-28T19:10:00Z"):
    config = load_config({**ENV, **(env or {})})
    body = build_daemonset(config, controller_id="earlier/1", refreshed_at=refreshed)
    kube._stored(body, "old-uid", 1)
    kube.roll_out()


def test_a_restart_adopts_the_daemonset_without_replacing_a_pod(controller, kube):
    left_by_an_earlier_process(kube)  # refreshed 50 minutes ago
    with capture_logs() as logs:
        assert controller.reconcile() == 0  # claimed: look again at once
        requeue = controller.reconcile()
    assert kube.writes == [("patch", NAME)]  # only the controller annotation
    assert ds(kube)["metadata"]["generation"] == 1  # the pod template is untouched
    assert ds(kube)["metadata"]["annotations"][CONTROLLER] == ME
    assert requeue == pytest.approx(600)  # the schedule continues: 10 minutes to the refresh
    assert events(logs, "daemonset_adopted")[0]["unchanged"] is True
    assert not events(logs, "daemonset_created")


def test_a_restart_with_a_changed_configuration_rolls(controller, kube):
    left_by_an_earlier_process(kube, {"IMAGES": "a=quay.io/a:0"})
    with capture_logs() as logs:
        controller.reconcile()
        controller.reconcile()
    assert kube.writes == [("patch", NAME), ("replace", NAME)]
    assert ds(kube)["metadata"]["uid"] == "old-uid"
    images = [c["image"] for c in ds(kube)["spec"]["template"]["spec"]["containers"]]
    assert images == ["quay.io/a:1", "quay.io/b:1"]
    assert events(logs, "daemonset_updated")


@pytest.mark.parametrize(
    "previous",
    [
        # Left by the Go original: its label on the selector only, which cannot be changed.
        {
            "metadata": {"name": NAME, "uid": "go", "resourceVersion": "1", "generation": 1},
            "spec": {"selector": {"matchLabels": {"test": "daemonset-test"}}},
        },
    ],
)
def test_a_go_original_leftover_is_replaced(controller, kube, previous):
    kube.objects[NAME] = previous
    controller.reconcile()  # claim
    controller.reconcile()  # its selector differs: delete
    assert kube.writes == [("patch", NAME), ("delete", NAME)]
    kube.finish_deletion()
    controller.reconcile()
    assert kube.writes[-1] == ("create", NAME)


# --- others ------------------------------------------------------------------------------------


def test_deleted_from_outside_is_created_again_at_once(controller, kube):
    created_and_ready(controller, kube)
    with capture_logs() as logs:
        del kube.objects[NAME]
        controller.reconcile()
    assert kube.writes[-1] == ("create", NAME)
    assert events(logs, "daemonset_deleted_externally")[0]["uid"] == "uid-1"


def test_a_newer_puller_keeps_the_name_and_this_one_stands_by(controller, kube):
    created_and_ready(controller, kube)
    ds(kube)["metadata"]["annotations"][CONTROLLER] = "newer/2"  # it adopted ours
    writes = list(kube.writes)
    with capture_logs() as logs:
        controller.reconcile()
        controller.reconcile()
        assert kube.writes == writes  # no fight
        kube.finish_deletion()  # the other one stopped and removed it
        controller.reconcile()
    assert events(logs, "another_controller")[0]["other"] == "newer/2"
    assert len(events(logs, "another_controller")) == 1
    assert events(logs, "standby_over")
    assert kube.writes[-1] == ("create", NAME)


def test_a_foreign_daemonset_of_our_name_is_left_alone(controller, kube):
    kube.objects[NAME] = {
        "metadata": {"name": NAME, "uid": "theirs", "labels": {"app": "x"}},
        "spec": {"selector": {"matchLabels": {"app": "x"}}},
    }
    with pytest.raises(DaemonSetInTheWay, match="uid theirs"):
        controller.reconcile()
    assert kube.writes == []


def another_owners_daemonset(kube, owner_kind="KubernetesImagePuller", owner_uid="res-uid"):
    """A DaemonSet of our name with every mark of ours, controlled by another object."""
    body = build_daemonset(load_config(ENV), controller_id="operator/1")
    body["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": owner_kind, "name": "other", "uid": owner_uid,
         "controller": True}
    ]  # fmt: skip
    return kube._stored(body, "theirs", 1)


@pytest.mark.parametrize("owner_kind", ["KubernetesImagePuller", "Deployment"])
def test_a_daemonset_another_object_owns_is_never_touched_and_the_conflict_named(
    controller, kube, owner_kind
):
    kube.deployment = {"metadata": {"name": NAME, "uid": "dep"}}
    theirs = copy.deepcopy(another_owners_daemonset(kube, owner_kind))
    for _ in range(3):
        with pytest.raises(DaemonSetInTheWay, match=f"owned by {owner_kind} other"):
            controller.reconcile()
    assert kube.writes == []
    assert ds(kube) == theirs  # not adopted, not updated, not relabelled
    assert controller.conflict and "res-uid" in controller.conflict
    (warning,) = [e for e in kube.recorded_events if e["reason"] == "NameConflict"]
    assert warning["type"] == "Warning" and f"{owner_kind} other" in warning["note"]
    assert warning["regarding"]["uid"] == "dep"  # told on our own Deployment
    kube.finish_deletion()  # the other one went away: the name is ours again
    controller.reconcile()
    assert kube.writes == [("create", NAME)] and controller.conflict is None


def test_a_daemonset_of_our_deleted_deployment_is_left_to_the_garbage_collector(controller, kube):
    kube.deployment = {"metadata": {"name": NAME, "uid": "dep-new"}}
    another_owners_daemonset(kube, "Deployment", "dep-old")["metadata"]["ownerReferences"][0][
        "name"
    ] = NAME
    assert controller.reconcile() == 30.0
    assert kube.writes == [] and controller.conflict is None


def test_a_renamed_puller_retires_only_its_own_old_daemonset(controller, kube):
    kube.deployment = {"metadata": {"name": NAME, "uid": "dep"}}
    created_and_ready(controller, kube)
    controller.offer(load_config({**ENV, "DAEMONSET_NAME": "renamed"}))
    controller.reconcile()
    # Meanwhile the old one is gone and another object's DaemonSet took the old name.
    kube.finish_deletion()
    another_owners_daemonset(kube)
    kube.roll_out("renamed")
    controller.reconcile()
    assert NAME in kube.objects and ds(kube)["metadata"]["uid"] == "theirs"
    assert ("delete-background", NAME) not in kube.writes


def test_a_configmap_edit_updates_the_template_in_place(controller, kube):
    created_and_ready(controller, kube)
    controller.offer(load_config({**ENV, "IMAGES": "a=quay.io/a:2"}))
    with capture_logs() as logs:
        controller.reconcile()
    assert kube.writes[-1] == ("replace", NAME)
    assert ds(kube)["metadata"]["uid"] == "uid-1"
    assert ds(kube)["spec"]["template"]["spec"]["containers"][0]["image"] == "quay.io/a:2"
    assert events(logs, "config_applied")[0]["changed"] == ["images"]


def test_an_edit_the_api_refuses_changes_nothing_and_is_reported(controller, kube):
    rejected = []
    controller.on_rejected = lambda config, message: rejected.append(message)
    created_and_ready(controller, kube)
    writes = list(kube.writes)
    kube.reject_dry_run = Invalid("spec.template.spec.affinity: Required value", status=422)
    controller.offer(load_config({**ENV, "IMAGES": "a=quay.io/a:2"}))
    with capture_logs() as logs:
        controller.reconcile()
    assert kube.writes == writes
    assert "Required value" in events(logs, "config_rejected")[0]["error"]
    assert "Required value" in rejected[0]
    kube.reject_dry_run = None
    controller.offer(load_config({**ENV, "IMAGES": "a=quay.io/a:3"}))  # the next good edit
    controller.reconcile()
    assert ds(kube)["spec"]["template"]["spec"]["containers"][0]["image"] == "quay.io/a:3"


def test_a_new_name_is_created_and_the_old_one_deleted_once_ready(controller, kube):
    created_and_ready(controller, kube)
    controller.offer(load_config({**ENV, "DAEMONSET_NAME": "renamed"}))
    controller.reconcile()
    assert set(kube.objects) == {NAME, "renamed"}  # both hold the images for now
    controller.reconcile()
    assert NAME in kube.objects
    kube.roll_out("renamed")
    with capture_logs() as logs:
        controller.reconcile()
    assert set(kube.objects) == {"renamed"}
    assert events(logs, "daemonset_retired")[0]["name"] == NAME


def image_of(kube):
    return ds(kube)["spec"]["template"]["spec"]["containers"][0]["image"]


@pytest.mark.parametrize(
    "failure, event",
    [
        (Invalid("spec.template.spec.affinity: Required value", status=422), "config_rejected"),
        (Transient("admission webhook unreachable", status=500), "config_not_checked"),
    ],
)
def test_an_edit_the_api_refuses_or_cannot_check_is_reported_and_tried_again_not_dropped(
    controller, kube, clock, failure, event
):
    created_and_ready(controller, kube)
    reported: list[str] = []
    controller.on_rejected = lambda _config, message: reported.append(message)
    kube.reject_dry_run = failure
    controller.offer(load_config({**ENV, "IMAGES": "a=quay.io/a:2"}), "generation 2")
    with capture_logs() as logs:
        retry = controller.reconcile()
        assert retry is not None and retry <= 2.0  # looked at again soon, not forgotten
        controller.reconcile()  # before the pause ends: not tried, not reported again
    assert image_of(kube) == "quay.io/a:1"  # nothing that runs changed
    assert len(events(logs, event)) == 1 and len(reported) == 1
    assert controller.refused == ("generation 2", reported[0])
    assert controller.applied_tag is None
    kube.reject_dry_run = None  # the webhook is back, or the policy changed
    clock.now += 2.0
    controller.reconcile()
    assert image_of(kube) == "quay.io/a:2"  # the very same edit, applied
    assert controller.applied_tag == "generation 2" and controller.refused is None


def test_a_newer_edit_replaces_one_that_waits_for_the_api(controller, kube, clock):
    created_and_ready(controller, kube)
    kube.reject_dry_run = Transient("etcd timeout", status=504)
    controller.offer(load_config({**ENV, "IMAGES": "a=quay.io/a:2"}), 2)
    controller.reconcile()
    kube.reject_dry_run = None
    controller.offer(load_config({**ENV, "IMAGES": "a=quay.io/a:3"}), 3)
    controller.reconcile()  # tried at once: a new edit does not wait for the old one's pause
    assert image_of(kube) == "quay.io/a:3" and controller.applied_tag == 3


def test_a_configuration_the_api_refuses_at_start_exits_1_touching_nothing(controller, kube):
    kube.reject_dry_run = Invalid("nodeSelectorTerms: Required value", status=422)
    with capture_logs() as logs:
        assert controller.run() == 1
    assert kube.writes == []
    assert "nodeSelectorTerms" in events(logs, "config_rejected")[0]["error"]


# --- stopping ----------------------------------------------------------------------------------


def test_a_stop_request_wakes_a_loop_waiting_for_its_next_look(controller, kube):
    woke = []
    waiter = threading.Thread(target=lambda: woke.append(controller.queue.get()))
    waiter.start()
    controller.request_stop()
    waiter.join(timeout=5)
    assert woke == [None]  # woken, and told it is a stop
    assert kube.stop.is_set() and kube.interrupted


def test_sigterm_keeps_a_daemonset_our_deployment_owns(controller, kube):
    kube.deployment = {"metadata": {"name": NAME, "uid": "dep"}}
    controller.reconcile()
    with capture_logs() as logs:
        controller.shutdown()
    assert NAME in kube.objects
    assert events(logs, "shutdown")[0]["deleted"] is False


def test_sigterm_deletes_a_daemonset_nothing_owns(controller, kube):
    controller.reconcile()
    with capture_logs() as logs:
        controller.shutdown()
        controller.shutdown()  # a second call does nothing
    assert kube.writes[-1] == ("delete-background", NAME)
    assert NAME not in kube.objects
    assert [e["deleted"] for e in events(logs, "shutdown")] == [True]


# --- the loop survives every failure -----------------------------------------------------------


def passing(clock):
    """A work-queue pause that passes on the injected clock at once (a pause until the next
    key is added still waits for it)."""

    def pause(changed, timeout):
        if timeout is None:
            return changed.wait()
        clock.now += timeout

    return pause


class Once(Controller):
    """Stops after ``rounds`` reconciles, so ``run()`` returns."""

    rounds = 3

    def reconcile(self):
        self.rounds -= 1
        if self.rounds <= 0:
            self.stop.set()
        return super().reconcile()


@pytest.mark.parametrize(
    "failure, event",
    [
        (Transient("connection refused"), "api_error"),
        # Once: not yet called a missing permission (it may be authorization warming up).
        (Forbidden("denied", permission="create daemonsets.apps in namespace ns"), "api_refused"),
        (
            NamespaceTerminating("namespace ns is being deleted", status=403),
            "namespace_terminating",
        ),
        (Conflict("Precondition failed: UID", status=409), "daemonset_changed_meanwhile"),
        (RuntimeError("bug"), "cycle_failed"),
    ],
)
def test_a_failure_is_logged_as_what_it_is_and_tried_again(kube, clock, wall, failure, event):
    controller = Once(
        load_config(ENV), kube, stop=kube.stop, clock=clock, wall=wall, identity=ME,
        informer=FakeInformer,
    )  # fmt: skip
    controller.queue.pause = passing(clock)  # no real waiting
    kube.fail_next = [failure]
    with capture_logs() as logs:
        assert controller.run() == 0
    assert events(logs, event)
    others = {"api_error", "api_forbidden", "cycle_failed", "namespace_terminating"} - {event}
    assert not [e for e in logs if e["event"] in others]
    assert ("create", NAME) in kube.writes  # tried again, and got there


def test_config_rejected_is_raised_for_a_refusal_only_at_start(controller, kube):
    kube.reject_dry_run = Invalid("bad", status=422)
    with pytest.raises(ConfigRejected):
        controller.reconcile()


# --- whose DaemonSet -------------------------------------------------------------------------

FOREIGN_LOOKING = {
    "metadata": {"name": NAME, "uid": "mine", "labels": {"app": "x"}},
    "spec": {"selector": {"matchLabels": {"app": "x"}}},
}


def test_is_ours_by_the_uid_we_created_whatever_its_labels():
    config = load_config(ENV)
    assert not is_ours(FOREIGN_LOOKING, config)
    assert not is_ours(FOREIGN_LOOKING, config, created_uid="another")
    assert is_ours(FOREIGN_LOOKING, config, created_uid="mine")


def test_is_ours_by_its_immutable_selector():
    config = load_config(ENV)
    ours = build_daemonset(config)
    del ours["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    ours["metadata"]["uid"] = "u"
    assert is_ours(ours, config)
    assert not is_ours(ours, load_config({**ENV, "DAEMONSET_NAME": "other"}))


def test_our_daemonset_stays_ours_when_its_labels_are_removed(controller, kube, wall):
    created_and_ready(controller, kube)
    obj = ds(kube)
    obj["metadata"]["labels"] = {}
    obj["spec"]["selector"] = {"matchLabels": {"app": "edited"}}  # only the uid is left
    wall.now += 3600
    with capture_logs() as logs:
        controller.reconcile()
    assert not events(logs, "daemonset_in_the_way")
    assert kube.writes[-1][0] in ("patch", "replace", "delete")


def test_refresh_time_is_written_as_the_api_writes_times():
    assert format_time(parse_time("2026-11-28T20:00:00Z")) == "2026-11-28T20:00:00.000Z"
    assert format_time(parse_time("2026-11-28T20:00:00.123Z")) == "2026-11-28T20:00:00.123Z"


def test_a_node_that_joins_and_is_ready_between_two_looks_is_still_reported(controller, kube):
    created_and_ready(controller, kube)
    with capture_logs() as logs:
        kube.roll_out(nodes=4)  # the new node's pod is ready before the next look
        controller.reconcile()
        controller.reconcile()  # once, not on every look
    (ready,) = events(logs, "daemonset_ready")
    assert (ready["ready"], ready["desired"], ready.get("late")) == (4, 4, True)


def test_a_template_too_large_for_its_pods_to_be_stored_is_refused_with_the_limit(
    kube, clock, wall
):
    images = ";".join(f"image{n}=quay.io/team/image-number-{n}:1.0" for n in range(1500))
    controller = make(kube, clock, wall, {"IMAGES": images})
    with pytest.raises(ConfigRejected, match=r"at most 524288 bytes") as raised:
        controller.reconcile()
    assert "for 1500 images" in str(raised.value)
    assert kube.writes == [] and kube.dry_runs == []  # refused before the API is asked


def test_a_cache_lagging_past_the_catch_up_time_is_not_trusted_for_a_second_refresh(
    controller, kube, clock, wall
):
    created_and_ready(controller, kube)
    wall.now += 3600
    kube.stale[NAME] = copy.deepcopy(ds(kube))  # the watch is relisting: it shows the old one
    controller.reconcile()  # the refresh
    patches = [w for w in kube.writes if w[0] == "patch"]
    assert len(patches) == 1
    for _ in range(3):  # the cache still lags, past CATCH_UP_SECONDS
        clock.now += 6
        controller.reconcile()
    assert [w for w in kube.writes if w[0] == "patch"] == patches  # no second refresh
    del kube.stale[NAME]
    kube.roll_out()
    controller.reconcile()
    assert [w for w in kube.writes if w[0] == "patch"] == patches


def test_a_403_is_called_a_missing_permission_only_when_it_persists(kube, clock, wall):
    controller = Once(
        load_config(ENV), kube, stop=kube.stop, clock=clock, wall=wall, identity=ME,
        informer=FakeInformer,
    )  # fmt: skip
    controller.rounds = 6
    controller.queue.pause = passing(clock)
    denied = Forbidden("denied", permission="create daemonsets.apps in namespace ns")
    kube.fail_next = [denied] * 5
    with capture_logs() as logs:
        controller.run()
    refused, forbidden = events(logs, "api_refused"), events(logs, "api_forbidden")
    assert refused and forbidden  # first only refused; past 10 s, a missing permission
    assert forbidden[0]["missing_permission"] == "create daemonsets.apps in namespace ns"
    first_forbidden = logs.index(forbidden[0])
    assert all(logs.index(r) < first_forbidden for r in refused)
