"""The object views' accessors: one rule each, and the cases where a careless read goes wrong."""

from __future__ import annotations

from typing import Any

import pytest

from imagepuller import objects, ownership, reconciler
from imagepuller.apitime import parse_time


def daemonset(generation: int = 2, **status: int) -> dict[str, Any]:
    return {"metadata": {"name": "cache", "uid": "u1", "generation": generation}, "status": status}


ROLLED_OUT = {
    "observedGeneration": 2,
    "desiredNumberScheduled": 3,
    "updatedNumberScheduled": 3,
    "numberAvailable": 3,
    "numberReady": 3,
}


def test_a_status_of_an_older_generation_is_not_complete_however_good_it_looks() -> None:
    stale = daemonset(**{**ROLLED_OUT, "observedGeneration": 1})
    assert not objects.generation_observed(stale)
    # Nothing counts as up to date until the controller has seen the generation.
    assert objects.rollout(stale) == (False, 0, 3)
    assert objects.rollout(daemonset(**ROLLED_OUT)) == (True, 3, 3)


def test_ready_old_pods_are_not_a_complete_rollout() -> None:
    rolling = daemonset(**{**ROLLED_OUT, "updatedNumberScheduled": 1})
    assert objects.rollout(rolling) == (False, 1, 3)


def test_a_daemonset_without_status_has_not_rolled_out() -> None:
    assert objects.rollout({"metadata": {"generation": 1}}) == (False, 0, 0)
    assert objects.rollout({"metadata": {"generation": 1}, "status": None}) == (False, 0, 0)


def test_the_rules_have_one_home_only() -> None:
    # A second name in an older home would let a new caller grow a second rule beside it.
    assert not hasattr(reconciler, "rollout")
    assert not hasattr(reconciler, "generation_observed")
    assert not hasattr(ownership, "controller_reference")


@pytest.mark.parametrize(
    ("meta", "deleting"),
    [
        ({"deletionTimestamp": "2026-12-04T12:00:00Z"}, True),
        ({"deletionTimestamp": None}, False),
        ({}, False),
    ],
)
def test_an_object_is_being_deleted_once_it_has_a_deletion_timestamp(
    meta: dict[str, Any], deleting: bool
) -> None:
    assert objects.being_deleted({"metadata": meta}) is deleting


def test_deletion_and_creation_times_are_read_as_wall_clock_seconds() -> None:
    obj = {
        "metadata": {
            "creationTimestamp": "2026-12-04T11:00:00Z",
            "deletionTimestamp": "2026-12-04T12:00:00Z",
        }
    }
    assert objects.created_at(obj) == parse_time("2026-12-04T11:00:00Z")
    assert objects.deleted_at(obj) == parse_time("2026-12-04T12:00:00Z")
    assert objects.deleted_at({"metadata": {}}) is None
    assert objects.created_at({"metadata": {"creationTimestamp": "not a time"}}) is None


@pytest.mark.parametrize("absent", [{}, {"annotations": None}, {"labels": None}])
def test_absent_and_null_annotations_and_labels_are_none(absent: dict[str, Any]) -> None:
    obj = {"metadata": absent}
    assert objects.annotations_of(obj) == {}
    assert objects.annotation(obj, "k") is None
    if "labels" in absent:
        assert objects.labels_of(obj) == {}


def test_an_object_without_metadata_has_none_of_it() -> None:
    assert objects.uid({}) is None
    assert objects.generation({}) == 0
    assert objects.namespace({}) == ""
    assert objects.owner_references({"metadata": {"ownerReferences": None}}) == []
    with pytest.raises(KeyError):
        objects.name({})  # a name is never optional: a body without one is a bug


def test_only_the_reference_marked_controller_is_the_controller() -> None:
    owner = {"kind": "Deployment", "name": "d", "uid": "d1"}
    controller = {"kind": "KubernetesImagePuller", "name": "r", "uid": "r1", "controller": True}
    obj = {"metadata": {"ownerReferences": [owner, "malformed", controller]}}
    assert objects.controller_reference(obj) == controller
    assert objects.controller_reference({"metadata": {"ownerReferences": [owner]}}) is None
    assert objects.owned_by(obj, "d1") and objects.owned_by(obj, "r1")
    assert not objects.owned_by(obj, "other")


def test_selector_labels_of_a_half_built_daemonset_are_empty() -> None:
    assert objects.selector_labels({}) == {}
    assert objects.selector_labels({"spec": {"selector": {"matchLabels": {"a": "b"}}}}) == {
        "a": "b"
    }


def test_a_guarded_write_never_reads_a_missing_uid_or_version_as_none() -> None:
    stored = {"metadata": {"uid": "u1", "resourceVersion": "7"}}
    assert objects.stored_uid(stored) == "u1"
    assert objects.stored_resource_version(stored) == "7"
    with pytest.raises(KeyError):
        objects.stored_uid({"metadata": {}})
    with pytest.raises(KeyError):
        objects.stored_resource_version({"metadata": {"uid": "u1"}})
