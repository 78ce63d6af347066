"""``decide``: one action from what is wanted and what is there, as a table; and its helpers."""

from __future__ import annotations

import copy

import pytest

from imagepuller.apitime import format_time, parse_time
from imagepuller.objects import rollout
from imagepuller.ownership import Ownership, Whose
from imagepuller.reconciler import (
    RETRY_SECONDS,
    Desired,
    Do,
    decide,
    refreshed_at,
)

ME = "pod-b/1"
HOUR = 3600.0
NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
SELECTOR = {"matchLabels": {"app.kubernetes.io/instance": "kip"}}


def desired(strategy="rolling", spec_hash="h1", selector=SELECTOR, interval=HOUR, timeout=300):
    body = {
        "metadata": {"name": "kip", "annotations": {"imagepuller.io/spec-hash": spec_hash}},
        "spec": {"selector": selector},
    }
    return Desired(body, strategy, interval, timeout)


def observed(
    *,
    controller=ME,
    spec_hash="h1",
    refreshed=NOW - 600,
    deleting=False,
    selector=SELECTOR,
    created=None,
    rolled_out=True,
):
    annotations = {"imagepuller.io/spec-hash": spec_hash}
    if controller is not None:
        annotations["imagepuller.io/controller"] = controller
    if refreshed is not None:
        annotations["imagepuller.io/refreshed-at"] = format_time(refreshed)
    metadata = {"name": "kip", "uid": "u1", "annotations": annotations}
    if created is not None:
        metadata["creationTimestamp"] = format_time(created)
    if deleting:
        metadata["deletionTimestamp"] = format_time(NOW)
    metadata["generation"] = 2
    updated = 3 if rolled_out else 1
    status = {
        "observedGeneration": 2,
        "desiredNumberScheduled": 3,
        "updatedNumberScheduled": updated,
        "numberAvailable": 3,
    }
    return {"metadata": metadata, "spec": {"selector": selector}, "status": status}


OWNED_BY_B = Ownership(Whose.ANOTHER_OWNER, "KubernetesImagePuller b (uid ub)")
OWNED_BY_OLD_SELF = Ownership(Whose.EARLIER_OWNER, "KubernetesImagePuller a (uid old)")


def whose(ours: bool | Ownership) -> Ownership:
    if isinstance(ours, Ownership):
        return ours
    return Ownership(Whose.OURS if ours else Whose.FOREIGN)


# (case, desired, observed, claimed, is_ours (or whose), expected action, requeue_after)
TABLE = [
    ("nothing there", desired(), None, False, False, Do.CREATE, None),
    ("ours was deleted", desired(), None, True, False, Do.CREATE, None),
    ("being deleted", desired(), observed(deleting=True), True, True, Do.WAIT, None),
    ("foreign", desired(), observed(controller=None), False, False, Do.IN_THE_WAY, RETRY_SECONDS),
    ("owned by another resource, our marks and all", desired(), observed(), True, OWNED_BY_B,
     Do.IN_THE_WAY, RETRY_SECONDS),
    ("owned by a deleted earlier owner of our name", desired(), observed(), False,
     OWNED_BY_OLD_SELF, Do.WAIT_FOR_COLLECTION, RETRY_SECONDS),
    ("an earlier process's", desired(), observed(controller="pod-a/1"), False, True, Do.CLAIM,
     None),
    ("a Go original leftover", desired(), observed(controller=None), False, True, Do.CLAIM, None),
    ("taken by a newer puller", desired(), observed(controller="pod-c/1"), True, True,
     Do.STAND_ASIDE, None),
    ("as wanted", desired(), observed(), True, True, Do.NOTHING, 3000.0),
    ("changed", desired(spec_hash="h2"), observed(), True, True, Do.UPDATE, None),
    ("changed, recreate strategy", desired("recreate", spec_hash="h2"), observed(), True, True,
     Do.DELETE, None),
    ("changed selector", desired(spec_hash="h2", selector={"matchLabels": {"x": "y"}}),
     observed(), True, True, Do.DELETE, None),
    ("refresh due", desired(), observed(refreshed=NOW - HOUR), True, True, Do.REFRESH, None),
    ("refresh overdue", desired(), observed(refreshed=NOW - 5 * HOUR), True, True, Do.REFRESH,
     None),
    ("refresh due, recreate strategy", desired("recreate"), observed(refreshed=NOW - HOUR), True,
     True, Do.DELETE, None),
    ("no refresh time: from creation", desired(),
     observed(refreshed=None, created=NOW - 50 * 60), True, True, Do.NOTHING, 600.0),
    ("no time at all: refresh now", desired(), observed(refreshed=None), True, True, Do.REFRESH,
     None),
    ("refresh due mid-rollout: let it finish", desired(interval=60),
     observed(refreshed=NOW - 100, rolled_out=False), True, True, Do.WAIT, 200.0),
    ("refresh due, rollout stuck past READY_TIMEOUT", desired(interval=60),
     observed(refreshed=NOW - 400, rolled_out=False), True, True, Do.REFRESH, None),
    ("refresh due, a stuck rollout on the hour", desired(),
     observed(refreshed=NOW - HOUR, rolled_out=False), True, True, Do.REFRESH, None),
    ("changed wins over a refresh", desired(spec_hash="h2"), observed(refreshed=NOW - HOUR), True,
     True, Do.UPDATE, None),
]  # fmt: skip


@pytest.mark.parametrize(
    "want, have, claimed, ours, expected, requeue",
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_decide(want, have, claimed, ours, expected, requeue):
    action = decide(want, have, NOW, identity=ME, claimed=claimed, whose=whose(ours))
    assert action.do is expected, action
    assert (
        action.requeue_after == pytest.approx(requeue) if requeue else action.requeue_after is None
    )
    assert action.why


def test_the_other_owner_and_the_refresh_are_values_not_words():
    conflict = decide(desired(), observed(), NOW, identity=ME, claimed=True, whose=OWNED_BY_B)
    assert conflict.other == "KubernetesImagePuller b (uid ub)"
    aside = decide(
        desired(), observed(controller="pod-c/1"), NOW, identity=ME, claimed=True, whose=whose(True)
    )
    assert aside.other == "pod-c/1"
    recreate = desired("recreate")
    due = decide(recreate, observed(refreshed=NOW - HOUR), NOW, identity=ME, claimed=True,
                 whose=whose(True))  # fmt: skip
    changed = decide(desired("recreate", spec_hash="h2"), observed(), NOW, identity=ME,
                     claimed=True, whose=whose(True))  # fmt: skip
    assert (due.do, due.refresh) == (Do.DELETE, True)
    assert (changed.do, changed.refresh) == (Do.DELETE, False)


def test_every_action_is_in_the_table():
    assert {row[5] for row in TABLE} == set(Do)


def test_a_restart_50_minutes_into_the_hour_refreshes_10_minutes_later():
    # The schedule is read from the DaemonSet, not from the process's memory.
    have = observed(controller="pod-a/1", refreshed=NOW - 50 * 60)
    claim = decide(desired(), have, NOW, identity=ME, claimed=False, whose=whose(True))
    assert claim.do is Do.CLAIM
    have["metadata"]["annotations"]["imagepuller.io/controller"] = ME
    action = decide(desired(), have, NOW, identity=ME, claimed=True, whose=whose(True))
    assert action.do is Do.NOTHING
    assert action.requeue_after == pytest.approx(600)


def test_a_shorter_interval_reschedules_the_next_refresh():
    have = observed(refreshed=NOW - 20 * 60)
    short = Desired(copy.deepcopy(desired().body), "rolling", 15 * 60, 300)
    assert decide(short, have, NOW, identity=ME, claimed=True, whose=whose(True)).do is Do.REFRESH


def test_times_round_trip_and_bad_ones_are_unknown():
    assert parse_time(format_time(NOW)) == NOW
    assert parse_time("2026-11-28T20:00:00Z") == parse_time("2026-11-28T20:00:00+00:00")
    assert parse_time("yesterday") is None and parse_time(None) is None
    assert refreshed_at({"metadata": {"annotations": {"imagepuller.io/refreshed-at": "x"}}}) == 0


def status(generation=2, observed=2, desired=3, updated=3, available=3, ready=3):
    return {
        "metadata": {"generation": generation},
        "status": {
            "observedGeneration": observed,
            "desiredNumberScheduled": desired,
            "updatedNumberScheduled": updated,
            "numberAvailable": available,
            "numberReady": ready,
        },
    }


@pytest.mark.parametrize(
    "daemonset, complete",
    [
        (status(), True),
        (status(observed=1), False),  # the DaemonSet controller has not seen the change yet
        (status(updated=2), False),  # mid-rollout: the old pods are ready, but old
        (status(available=2), False),  # a new pod is not available yet
        (status(desired=0, updated=0, available=0, ready=0), True),  # no node selected
        ({"metadata": {"generation": 1}}, False),  # no status yet
    ],
)
def test_rollout_is_complete_only_when_every_node_runs_the_current_template(daemonset, complete):
    assert rollout(daemonset)[0] is complete
