"""A `KubernetesImagePuller`'s status over observations, as a table: each row is what one look
saw (resourcestatus.Observation) and the conditions, counts and failures it must report."""

from __future__ import annotations

from typing import Any

import pytest

from imagepuller.apitime import parse_time
from imagepuller.daemonset import REFRESH_ANNOTATION
from imagepuller.failures import Failure
from imagepuller.resourcestatus import (
    FAILURES_SHOWN,
    Observation,
    resource_status,
)

NOW = parse_time("2026-12-04T12:00:00Z") or 0.0
EARLIER = "2026-12-04T11:00:00Z"
REFRESHED = "2026-12-04T11:30:00.250Z"


def daemonset(
    *, desired=3, updated=3, available=3, containers=2, generation=2, observed=2
) -> dict[str, Any]:
    return {
        "metadata": {"name": "kubernetes-image-puller", "generation": generation},
        "spec": {
            "template": {
                "metadata": {"annotations": {REFRESH_ANNOTATION: REFRESHED}},
                "spec": {"containers": [{"name": f"c{n}"} for n in range(containers)]},
            }
        },
        "status": {
            "observedGeneration": observed,
            "desiredNumberScheduled": desired,
            "updatedNumberScheduled": updated,
            "numberAvailable": available,
            "numberReady": available,
        },
    }


def failure(node: str, message: str = "not found") -> Failure:
    return Failure(node, "quay.io/x:1", "", "ErrImagePull", message)


def conditions(body: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in body["conditions"]}


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [c for c in body["conditions"] if c["type"] == kind]
    return found


READY = {"Ready": ("True", "AllImagesCached"), "Progressing": ("False", "Complete"),
         "Degraded": ("False", "AsExpected")}  # fmt: skip

CASES = [
    pytest.param(
        Observation(3, {}, conflict="DaemonSet x in ns is kept for the older resource a"),
        {
            "Ready": ("False", "NameConflict"),
            "Progressing": ("False", "NameConflict"),
            "Degraded": ("True", "NameConflict"),
        },  # fmt: skip
        {"desired": 0, "ready": 0},
        id="a name conflict reports nothing else",
    ),
    pytest.param(
        Observation(3, {}, problems=["spec.images: expected `name=image;`"]),
        {
            "Ready": ("False", "InvalidSpec"),
            "Progressing": ("False", "InvalidSpec"),
            "Degraded": ("True", "InvalidSpec"),
        },  # fmt: skip
        {"desired": 0, "ready": 0},
        id="an invalid spec before any DaemonSet",
    ),
    pytest.param(
        Observation(3, {}),
        {
            "Ready": ("False", "Creating"),
            "Progressing": ("True", "Creating"),
            "Degraded": ("False", "Creating"),
        },  # fmt: skip
        {"desired": 0, "ready": 0},
        id="starting",
    ),
    pytest.param(
        Observation(3, {}, daemonset=daemonset(), current=True),
        READY,
        {"desired": 3, "ready": 3},
        id="every node holds this spec's images",
    ),
    pytest.param(
        Observation(
            3, {}, daemonset=daemonset(updated=1, available=3), current=True, held_from_pods=1
        ),  # fmt: skip
        {
            "Ready": ("False", "Pulling"),
            "Progressing": ("True", "RollingOut"),
            "Degraded": ("False", "AsExpected"),
        },  # fmt: skip
        {"desired": 3, "ready": 1},
        id="a rollout counts what the pods hold, not the old pods available",
    ),
    pytest.param(
        Observation(3, {}, daemonset=daemonset(updated=2, available=3), current=True),
        {
            "Ready": ("False", "Pulling"),
            "Progressing": ("True", "RollingOut"),
            "Degraded": ("False", "AsExpected"),
        },  # fmt: skip
        {"desired": 3, "ready": 2},
        id="a rollout without a pod count counts the updated pods",
    ),
    pytest.param(
        Observation(3, {}, daemonset=daemonset(), current=False),
        {
            "Ready": ("False", "Updating"),
            "Progressing": ("True", "RollingOut"),
            "Degraded": ("False", "AsExpected"),
        },  # fmt: skip
        {"desired": 3, "ready": 3},
        id="a DaemonSet with an older spec's template holds no image of this one",
    ),
    pytest.param(
        Observation(3, {}, daemonset=daemonset(desired=0, updated=0, available=0), current=True),
        {
            "Ready": ("False", "NoNodesSelected"),
            "Progressing": ("False", "Complete"),
            "Degraded": ("False", "AsExpected"),
        },  # fmt: skip
        {"desired": 0, "ready": 0},
        id="no node selected",
    ),
    pytest.param(
        Observation(
            3,
            {},
            daemonset=daemonset(updated=1, available=3),
            current=True,
            held_from_pods=1,
            failures=[failure("node-2"), failure("node-3")],
        ),  # fmt: skip
        {
            "Ready": ("False", "Pulling"),
            "Progressing": ("True", "RollingOut"),
            "Degraded": ("True", "ImagesNotCached"),
        },  # fmt: skip
        {"desired": 3, "ready": 1},
        id="failing pulls degrade it",
    ),
    pytest.param(
        Observation(
            4,
            {},
            daemonset=daemonset(),
            current=True,
            applied_generation=3,
            observed_generation=4,
            problems=["the API could not check it"],
            problem_reason="SpecNotChecked",
        ),  # fmt: skip
        {
            "Ready": ("True", "AllImagesCached"),
            "Progressing": ("False", "Complete"),
            "Degraded": ("True", "SpecNotChecked"),
        },  # fmt: skip
        {"desired": 3, "ready": 3},
        id="a newer spec the API could not check: what runs stays ready",
    ),
]


@pytest.mark.parametrize(("seen", "expected", "nodes"), CASES)
def test_the_status_of_each_observation(seen, expected, nodes):
    body = resource_status(seen, NOW)
    assert conditions(body) == expected
    assert body["nodes"] == nodes
    assert [c["type"] for c in body["conditions"]] == ["Ready", "Progressing", "Degraded"]


def test_what_runs_and_what_was_looked_at_carry_their_own_generations():
    seen = Observation(4, {}, daemonset=daemonset(), current=True, applied_generation=3,
                       observed_generation=4, problems=["refused"])  # fmt: skip
    body = resource_status(seen, NOW)
    assert body["observedGeneration"] == 4
    assert condition(body, "Ready")["observedGeneration"] == 3
    assert condition(body, "Progressing")["observedGeneration"] == 3
    assert condition(body, "Degraded")["observedGeneration"] == 4
    assert condition(body, "Degraded")["message"] == "refused"


def test_counts_images_the_init_image_and_the_refresh_time_of_a_complete_rollout():
    seen = Observation(2, {"lastRefreshTime": EARLIER}, daemonset=daemonset(containers=5),
                       current=True, kip_image="quay.io/kip:1")  # fmt: skip
    body = resource_status(seen, NOW)
    assert (body["images"], body["imagePullerImage"]) == (5, "quay.io/kip:1")
    assert body["lastRefreshTime"] == REFRESHED
    assert condition(body, "Ready")["message"] == "All 5 images held on 3/3 nodes"
    # During a rollout the stored refresh time stays.
    rolling = Observation(2, {"lastRefreshTime": EARLIER}, current=True,
                          daemonset=daemonset(updated=1))  # fmt: skip
    assert resource_status(rolling, NOW)["lastRefreshTime"] == EARLIER


def test_failures_are_listed_up_to_the_bound_with_short_messages_and_all_counted():
    many = [failure(f"node-{n:02}", "x" * 5000) for n in range(FAILURES_SHOWN + 7)]
    seen = Observation(2, {}, daemonset=daemonset(updated=1), current=True, failures=many)
    body = resource_status(seen, NOW)
    assert len(body["failures"]) == FAILURES_SHOWN
    assert body["failuresTotal"] == FAILURES_SHOWN + 7
    assert body["failures"][0] == {
        "node": "node-00",
        "image": "quay.io/x:1",
        "reason": "ErrImagePull",
        "message": "x" * 1024,
    }
    assert condition(body, "Degraded")["message"].endswith(f"and {FAILURES_SHOWN + 2} more")


def test_a_condition_keeps_its_transition_time_until_its_status_changes():
    first = resource_status(Observation(2, {}, daemonset=daemonset(), current=True), NOW)
    assert condition(first, "Ready")["lastTransitionTime"] == "2026-12-04T12:00:00Z"
    later = NOW + 600
    same = resource_status(Observation(2, first, daemonset=daemonset(), current=True), later)
    assert condition(same, "Ready")["lastTransitionTime"] == "2026-12-04T12:00:00Z"
    flipped = resource_status(
        Observation(2, same, daemonset=daemonset(updated=1), current=True), later
    )
    assert condition(flipped, "Ready")["lastTransitionTime"] == "2026-12-04T12:10:00Z"
    # Progressing was False (complete) and is True now: its time moves too; Degraded stays.
    assert condition(flipped, "Progressing")["lastTransitionTime"] == "2026-12-04T12:10:00Z"
    assert condition(flipped, "Degraded")["lastTransitionTime"] == "2026-12-04T12:00:00Z"
