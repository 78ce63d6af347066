"""The lifecycle, driven by a fake clock and scripted API events: no sleeping, no cluster."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from imagepuller.config import load_config
from imagepuller.controller import Controller, is_ours, is_ready
from imagepuller.daemonset import build_daemonset
from imagepuller.kube import (
    Conflict,
    Forbidden,
    Invalid,
    NamespaceTerminating,
    Stopped,
    Transient,
    WaitTimeout,
)

ENV = {
    "IMAGES": "a=quay.io/a:1;b=quay.io/b:1",
    "CACHING_INTERVAL_HOURS": "1",
    "READY_TIMEOUT": "60s",
    "NAMESPACE": "ns",
}
NAME = "kubernetes-image-puller"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeKube:
    """The Kube calls the controller makes, against in-memory objects.

    ``script`` holds actions run one per wait round, as if they happened in the cluster while
    the controller watched; when it runs out, a wait times out at its deadline.
    """

    def __init__(self, clock: FakeClock, stop: threading.Event):
        self.clock = clock
        self.stop = stop
        self.objects: dict[str, dict] = {}
        self.deployment: dict | None = {"metadata": {"name": NAME, "uid": "dep-uid"}}
        self.script: list[Callable[[], None]] = []
        self.created: list[dict] = []
        self.deleted: list[tuple[str, str, bool]] = []
        self.pods: list[dict] = []
        self.delete_timeouts: list = []
        self.dry_runs: list[dict] = []
        self.events: list[dict] = []
        self.event_selectors: list[str] = []
        self.reject_dry_run: Exception | None = None
        self.fail_next: list[Exception] = []
        # After the Nth create, the script becomes this (what happens to the new DaemonSet).
        self.script_after_create: dict[int, list[Callable[[], None]]] = {}
        # Run at the start of the Nth wait (1-based): set a script, or raise as the API would.
        self.before_wait: dict[int, Callable[[], None]] = {}
        self.wait_deadlines: list[float] = []
        self._uids = (f"uid-{n}" for n in itertools.count(1))

    def _maybe_fail(self):
        if self.fail_next:
            raise self.fail_next.pop(0)

    def is_openshift(self):
        return False

    def get_daemonset(self, namespace, name):
        self._maybe_fail()
        return self.objects.get(name)

    def get_deployment(self, namespace, name):
        return self.deployment

    def create_daemonset(self, body, *, dry_run=False):
        if dry_run:
            self.dry_runs.append(body)
            if self.reject_dry_run:
                raise self.reject_dry_run
            return body
        self._maybe_fail()
        obj = {
            **body,
            "metadata": {**body["metadata"], "uid": next(self._uids), "generation": 1},
            "status": {},
        }
        self.objects[body["metadata"]["name"]] = obj
        self.created.append(obj)
        if len(self.created) in self.script_after_create:
            self.script[:] = self.script_after_create[len(self.created)]
        return obj

    def delete_daemonset(self, namespace, name, *, uid=None, foreground=True, timeout=None):
        self.deleted.append((name, uid, foreground))
        self.delete_timeouts.append(timeout)
        return self.objects.pop(name, None) is not None

    def list_pods(self, namespace, label_selector):
        return self.pods

    def list_events(self, namespace, field_selector):
        self.event_selectors.append(field_selector)
        return self.events

    def wait_for_daemonset(self, namespace, name, condition, deadline, on_change=None):
        self.wait_deadlines.append(deadline)
        if len(self.wait_deadlines) in self.before_wait:
            self.before_wait[len(self.wait_deadlines)]()
        while True:
            if self.stop.is_set():
                raise Stopped()
            current = self.objects.get(name)
            if on_change:
                on_change(current)
            if condition(current):
                return current
            if not self.script:
                self.clock.now = max(self.clock.now, deadline)
                raise WaitTimeout(current)
            self.script.pop(0)()

    def script_at_wait(self, n, actions):
        """From the Nth wait on, the cluster does ``actions``."""

        def install():
            self.script[:] = actions

        self.before_wait[n] = install

    # --- what the cluster does -------------------------------------------------------------

    def become_ready(self, ready=3, desired=3):
        def action():
            obj = self.objects[NAME]
            obj["status"] = {
                "observedGeneration": 1,
                "numberReady": ready,
                "desiredNumberScheduled": desired,
            }

        return action

    def delete_from_outside(self):
        return lambda: self.objects.pop(NAME)

    def request_stop(self):
        return self.stop.set


@pytest.fixture
def world():
    clock, stop = FakeClock(), threading.Event()
    kube = FakeKube(clock, stop)
    backoffs = []

    def no_real_waiting(timeout=None):
        # The error backoff never sleeps in these tests; a loop of errors fails fast.
        backoffs.append(timeout)
        assert len(backoffs) < 50, "the controller keeps failing: " + repr(backoffs[:5])
        return stop.is_set()

    stop.wait = no_real_waiting
    controller = Controller(load_config(ENV), kube, stop=stop, clock=clock)
    return controller, kube, clock, stop


def events(logs, name):
    return [entry for entry in logs if entry["event"] == name]


def test_is_ready_needs_the_current_generation_observed():
    ds = {
        "metadata": {"generation": 2},
        "status": {"observedGeneration": 1, "numberReady": 0, "desiredNumberScheduled": 0},
    }
    assert not is_ready(ds)
    ds["status"]["observedGeneration"] = 2
    assert is_ready(ds)
    ds["status"]["desiredNumberScheduled"] = 3
    assert not is_ready(ds)


def test_creates_waits_and_refreshes_every_interval(world):
    controller, kube, clock, stop = world
    start = clock.now
    # Cycle 1 ready; then no event until the refresh is due; cycle 2 ready; then stop.
    kube.script = [kube.become_ready(), lambda: None]
    kube.script_after_create[2] = [kube.become_ready(), kube.request_stop()]
    with capture_logs() as logs:
        assert controller.run() == 0

    assert [c["metadata"]["uid"] for c in kube.created] == ["uid-1", "uid-2"]
    # The refresh came one interval after the first DaemonSet was ready.
    assert events(logs, "refresh_due")
    assert clock.now >= start + 3600
    # Refresh deletes the old one (foreground) before creating the new one.
    assert ("kubernetes-image-puller", "uid-1", True) in kube.deleted
    # Shutdown deletes the current one, in the background so it is gone at once, with a
    # timeout short enough to fit the pod's 30 s termination grace period.
    assert kube.deleted[-1] == (NAME, "uid-2", False)
    assert sum(kube.delete_timeouts[-1]) < 30
    assert NAME not in kube.objects
    ready = events(logs, "daemonset_ready")
    assert [(e["ready"], e["desired"]) for e in ready] == [(3, 3), (3, 3)]


def test_owner_reference_points_at_the_deployment(world):
    controller, kube, _, stop = world
    kube.script = [kube.become_ready(), kube.request_stop()]
    controller.run()
    assert kube.created[0]["metadata"]["ownerReferences"][0]["uid"] == "dep-uid"


def test_without_deployment_the_daemonset_has_no_owner(world):
    controller, kube, _, _ = world
    kube.deployment = None
    kube.script = [kube.become_ready(), kube.request_stop()]
    with capture_logs() as logs:
        controller.run()
    assert "ownerReferences" not in kube.created[0]["metadata"]
    assert events(logs, "owner_not_found")


@pytest.mark.parametrize(
    "previous",
    [
        # Made by this puller.
        {
            "metadata": {
                "name": NAME,
                "uid": "old",
                "labels": {"app.kubernetes.io/managed-by": "imagepuller"},
            }
        },
        # Left by the Go original: no object labels, its label on the selector and pods only,
        # and an owner reference to a Deployment of another name. Migrating from it works.
        {
            "metadata": {
                "name": NAME,
                "uid": "old",
                "ownerReferences": [{"kind": "Deployment", "name": "other-puller"}],
            },
            "spec": {
                "selector": {"matchLabels": {"test": "daemonset-test"}},
                "template": {"metadata": {"labels": {"test": "daemonset-test"}}},
            },
        },
        # Owned by our Deployment.
        {
            "metadata": {
                "name": NAME,
                "uid": "old",
                "ownerReferences": [{"kind": "Deployment", "name": NAME}],
            }
        },
    ],
    ids=["ours", "go-original", "owned-by-our-deployment"],
)
def test_previous_daemonset_of_ours_is_replaced(world, previous):
    controller, kube, _, _ = world
    kube.objects[NAME] = previous
    kube.script = [kube.become_ready(), kube.request_stop()]
    controller.run()
    assert kube.deleted[0] == (NAME, "old", True)
    assert kube.created[0]["metadata"]["uid"] == "uid-1"


def test_a_foreign_daemonset_is_left_alone_and_named(world):
    controller, kube, clock, stop = world
    foreign = {"metadata": {"name": NAME, "uid": "theirs", "labels": {"app": "other"}}}
    kube.objects[NAME] = foreign
    waits = []

    def wait(seconds):  # the error backoff: stop after two attempts
        waits.append(seconds)
        if len(waits) == 2:
            stop.set()
        return stop.is_set()

    stop.wait = wait
    with capture_logs() as logs:
        assert controller.run() == 0
    assert kube.objects[NAME] is foreign
    assert kube.deleted == []
    errors = events(logs, "daemonset_in_the_way")
    assert len(errors) == 2
    assert "uid theirs" in errors[0]["error"] and "'app': 'other'" in errors[0]["error"]
    assert waits == [2.0, 4.0]  # the pause grows


def test_ready_timeout_reports_failing_nodes_and_images_and_carries_on(world):
    controller, kube, clock, stop = world
    kube.pods = [
        {
            "metadata": {"name": "p1"},
            "spec": {"nodeName": "node-1", "containers": [{"name": "b", "image": "quay.io/b:1"}]},
            "status": {
                "containerStatuses": [
                    {
                        "name": "b",
                        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "nope"}},
                    }
                ]
            },
        }
    ]
    # Never ready: the ready wait times out; then the keep wait is stopped.
    kube.script = [kube.become_ready(ready=2, desired=3)]
    kube.script_at_wait(2, [kube.request_stop()])
    with capture_logs() as logs:
        assert controller.run() == 0
    (summary,) = events(logs, "daemonset_not_ready")
    assert (summary["ready"], summary["desired"], summary["failing"]) == (2, 3, 1)
    (failure,) = events(logs, "image_not_cached")
    assert failure["node"] == "node-1"
    assert failure["image"] == "quay.io/b:1"
    assert failure["reason"] == "ImagePullBackOff"
    # The ready wait was bounded by READY_TIMEOUT (60 s) from its start.
    assert kube.wait_deadlines[0] == 1000.0 + 60


def test_progress_is_logged_as_it_changes(world):
    controller, kube, _, _ = world
    kube.script = [
        kube.become_ready(1, 3),
        kube.become_ready(1, 3),
        kube.become_ready(3, 3),
        kube.request_stop(),
    ]
    with capture_logs() as logs:
        controller.run()
    progress = [(e["ready"], e["desired"]) for e in events(logs, "daemonset_progress")]
    assert progress == [(0, 0), (1, 3), (3, 3)]


def test_deleted_from_outside_is_recreated_at_once(world):
    controller, kube, clock, stop = world
    kube.script = [kube.become_ready(), kube.delete_from_outside()]
    kube.script_after_create[2] = [kube.become_ready(), kube.request_stop()]
    start = clock.now
    with capture_logs() as logs:
        controller.run()
    assert len(kube.created) == 2
    assert events(logs, "daemonset_deleted_externally")
    assert clock.now == start  # no waiting for the interval


def test_a_failing_cycle_is_logged_and_retried(world):
    controller, kube, _, stop = world
    kube.fail_next = [Transient("connection refused"), RuntimeError("bug")]
    kube.script = [kube.become_ready(), kube.request_stop()]
    with capture_logs() as logs:
        assert controller.run() == 0
    assert events(logs, "api_error")[0]["error"] == "connection refused"
    assert events(logs, "cycle_failed")  # the unexpected exception did not end the loop
    assert len(kube.created) == 1


def test_forbidden_names_the_missing_permission(world):
    controller, kube, _, stop = world
    kube.fail_next = [Forbidden("denied", permission="create daemonsets.apps in namespace ns")]
    kube.script = [kube.become_ready(), kube.request_stop()]
    with capture_logs() as logs:
        controller.run()
    (denied,) = events(logs, "api_forbidden")
    assert denied["missing_permission"] == "create daemonsets.apps in namespace ns"


def test_stop_before_anything_was_created_deletes_nothing(world):
    controller, kube, _, stop = world
    stop.set()
    assert controller.run() == 0
    assert kube.created == [] and kube.deleted == []


def test_no_matching_node_is_a_warning(world):
    controller, kube, _, _ = world
    kube.script = [kube.become_ready(0, 0), kube.request_stop()]
    with capture_logs() as logs:
        controller.run()
    assert events(logs, "no_nodes_selected")


def test_platform_detection_is_retried_after_a_transient_failure(world):
    controller, kube, _, stop = world
    answers = [Transient("refused"), True]

    def is_openshift():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    kube.is_openshift = is_openshift
    kube.script = [kube.become_ready(), kube.request_stop()]
    controller.run()
    # Detected on the second cycle: OpenShift, so no fixed UID in the pods.
    security = kube.created[0]["spec"]["template"]["spec"]["securityContext"]
    assert "runAsUser" not in security


def test_a_failure_while_keeping_does_not_recreate_a_healthy_daemonset(world):
    controller, kube, clock, stop = world

    def watch_breaks():  # the first keep
        raise Transient("watch broke")

    kube.before_wait[2] = watch_breaks
    kube.script_at_wait(3, [kube.request_stop()])  # the second keep
    kube.script = [kube.become_ready()]
    with capture_logs() as logs:
        controller.run()
    assert len(kube.created) == 1  # kept, not recreated
    assert events(logs, "api_error")
    # Same refresh time as before the failure.
    assert kube.wait_deadlines[1] == kube.wait_deadlines[2]


def test_ready_after_the_timeout_is_reported_late_and_progress_followed(world):
    controller, kube, clock, stop = world
    # Keeping it, after the ready wait timed out:
    kube.script_at_wait(
        2,
        [
            kube.become_ready(2, 3),
            kube.become_ready(3, 3),
            kube.become_ready(3, 4),
            kube.become_ready(4, 4),
            kube.request_stop(),
        ],
    )
    kube.script = [kube.become_ready(1, 3)]
    with capture_logs() as logs:
        controller.run()
    assert events(logs, "daemonset_not_ready")
    late = events(logs, "daemonset_ready")
    assert [(e["ready"], e["desired"], e.get("late")) for e in late] == [(3, 3, True), (4, 4, True)]
    progress = [(e["ready"], e["desired"]) for e in events(logs, "daemonset_progress")]
    assert progress[-4:] == [(2, 3), (3, 3), (3, 4), (4, 4)]


def test_a_failure_while_waiting_for_readiness_does_not_recreate(world):
    controller, kube, clock, stop = world

    def watch_refused():  # the ready wait
        raise Forbidden("denied", permission="watch daemonsets.apps in namespace ns")

    kube.before_wait[1] = watch_refused
    kube.script_at_wait(2, [kube.become_ready(), kube.request_stop()])
    with capture_logs() as logs:
        controller.run()
    assert len(kube.created) == 1  # the retry kept it instead of deleting and re-pulling
    assert [d for d in kube.deleted if d[2]] == []  # no foreground (refresh) delete
    assert events(logs, "daemonset_ready")[0].get("late") is True


def test_a_configuration_the_api_rejects_exits_1_and_touches_nothing(world):
    controller, kube, _, _ = world
    running = {
        "metadata": {
            "name": NAME,
            "uid": "running",
            "labels": {"app.kubernetes.io/managed-by": "imagepuller"},
        }
    }
    kube.objects[NAME] = running
    kube.reject_dry_run = Invalid(
        "the API rejected the daemonsets.apps: spec.template.spec.affinity.nodeAffinity: "
        'unknown field "requiredDuringSchedulingIgnoredDuringExecutio"'
    )
    with capture_logs() as logs:
        assert controller.run() == 1
    (rejected,) = events(logs, "config_rejected")
    assert "requiredDuringSchedulingIgnoredDuringExecutio" in rejected["error"]
    assert "nothing was changed" in rejected["error"]
    assert kube.objects[NAME] is running  # what already runs is left as it is
    assert kube.deleted == [] and kube.created == []
    # The dry run used another name, so an existing DaemonSet does not make it a conflict.
    assert kube.dry_runs[0]["metadata"]["name"] == NAME + "-dry-run"


def test_the_dry_run_happens_once(world):
    controller, kube, clock, _ = world
    kube.script = [kube.become_ready(), lambda: None]
    kube.script_after_create[2] = [kube.become_ready(), kube.request_stop()]
    controller.run()
    assert len(kube.created) == 2 and len(kube.dry_runs) == 1


def test_shutdown_acts_once_even_when_called_twice(world):
    controller, kube, _, stop = world
    kube.script = [kube.become_ready(), kube.request_stop()]
    controller.run()
    controller.shutdown()  # as the CLI does when the worker did not finish in time
    assert [d for d in kube.deleted if not d[2]] == [(NAME, "uid-1", False)]


def test_pods_that_could_not_be_created_are_reported_with_the_reason(world):
    controller, kube, _, stop = world
    kube.events = [
        {
            "message": 'pods "p" is forbidden: exceeded quota: mem, requested: limits.memory=40Mi',
            "count": 3,
        },
        {
            "message": 'pods "p" is forbidden: exceeded quota: mem, requested: limits.memory=40Mi',
            "count": 2,
        },
    ]
    kube.script_at_wait(2, [kube.request_stop()])
    kube.script = [kube.become_ready(0, 3)]  # three nodes, no pod at all
    with capture_logs() as logs:
        controller.run()
    (summary,) = events(logs, "daemonset_not_ready")
    assert summary["failing"] == 1
    (failure,) = events(logs, "image_not_cached")
    assert failure["reason"] == "FailedCreate"
    assert "exceeded quota" in failure["message"] and failure["times"] == "5"
    assert kube.event_selectors == ["involvedObject.uid=uid-1,reason=FailedCreate"]


def test_a_second_controller_is_not_fought_but_waited_for(world):
    controller, kube, _, stop = world
    controller.identity = "me/1"
    theirs = {
        "metadata": {
            "name": NAME,
            "uid": "theirs",
            "labels": {"app.kubernetes.io/managed-by": "imagepuller"},
            "annotations": {"imagepuller.io/controller": "other/2"},
        }
    }

    def replaced_by_another():
        kube.objects[NAME] = theirs

    def they_stop():
        del kube.objects[NAME]

    kube.script_after_create[2] = [kube.become_ready(), kube.request_stop()]
    kube.script = [kube.become_ready(), replaced_by_another, lambda: None, they_stop]
    with capture_logs() as logs:
        controller.run()
    (other,) = events(logs, "another_controller")
    assert other["other"] == "other/2"
    assert events(logs, "standby_over")
    # Theirs was never deleted; ours came back only once the name was free.
    assert all(uid != "theirs" for _, uid, _ in kube.deleted)
    assert len(kube.created) == 2
    assert kube.created[0]["metadata"]["annotations"]["imagepuller.io/controller"] == "me/1"


def test_losing_the_race_for_the_name_to_another_controller_stands_aside(world):
    controller, kube, _, _ = world
    controller.identity = "me/1"
    theirs = {
        "metadata": {
            "name": NAME,
            "uid": "theirs",
            "annotations": {"imagepuller.io/controller": "other/2"},
        }
    }
    original_create = kube.create_daemonset
    raced = []

    def create(body, dry_run=False):
        if not dry_run and not raced:
            raced.append(True)
            kube.objects[NAME] = theirs  # they got there between our delete and our create
            raise Conflict("already exists", status=409)
        return original_create(body, dry_run=dry_run)

    kube.create_daemonset = create
    kube.script_after_create[1] = [kube.become_ready(), kube.request_stop()]
    kube.script = [lambda: kube.objects.pop(NAME)]  # later they stop and free the name
    with capture_logs() as logs:
        controller.run()
    assert events(logs, "another_controller")[0]["other"] == "other/2"
    assert all(uid != "theirs" for _, uid, _ in kube.deleted)
    assert len(kube.created) == 1


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
    renamed = load_config({**ENV, "DAEMONSET_NAME": "other"})
    assert not is_ours(ours, renamed)  # another puller's image cache, not ours


def test_our_daemonset_stays_ours_when_its_labels_are_removed(world):
    # No owner Deployment (`make run`): only the label said it was ours, and someone removed it.
    controller, kube, clock, stop = world
    kube.deployment = None

    def labels_removed():
        obj = kube.objects[NAME]
        obj["metadata"]["labels"] = {}
        obj["spec"]["selector"] = {"matchLabels": {"app": "edited"}}  # only the uid is left

    kube.script = [kube.become_ready(), labels_removed, lambda: None]
    kube.script_after_create[2] = [kube.become_ready(), kube.request_stop()]
    with capture_logs() as logs:
        controller.run()
    assert not events(logs, "daemonset_in_the_way")
    assert (NAME, "uid-1", True) in kube.deleted  # refreshed: ours to delete
    assert [c["metadata"]["uid"] for c in kube.created] == ["uid-1", "uid-2"]


def test_a_namespace_being_deleted_is_reported_as_such(world):
    controller, kube, _, stop = world
    kube.fail_next = [NamespaceTerminating("namespace ns is being deleted", status=403)]
    kube.script = [kube.become_ready(), kube.request_stop()]
    with capture_logs() as logs:
        assert controller.run() == 0
    (terminating,) = events(logs, "namespace_terminating")
    assert terminating["namespace"] == "ns"
    assert not events(logs, "api_forbidden")
    assert len(kube.created) == 1  # tried again, in case the namespace comes back


def test_a_concurrent_change_is_not_an_api_error(world):
    # The hand-off race with another puller: our uid-guarded delete finds a new DaemonSet.
    controller, kube, _, stop = world
    kube.fail_next = [Conflict("Precondition failed: UID in precondition: a", status=409)]
    kube.script = [kube.become_ready(), kube.request_stop()]
    with capture_logs() as logs:
        assert controller.run() == 0
    (changed,) = events(logs, "daemonset_changed_meanwhile")
    assert "Precondition failed" in changed["detail"]
    assert not events(logs, "api_error")
    assert len(kube.created) == 1
