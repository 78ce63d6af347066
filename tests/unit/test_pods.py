"""Failure reasons read from pod status, per node and image."""

from imagepuller.failures import Failure
from imagepuller.pods import pull_failures


def pod(name, node, statuses, init_statuses=(), conditions=()):
    return {
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "initContainers": [{"name": "copy-sleep", "image": "quay.io/kip:1"}],
            "containers": [
                {"name": "good", "image": "quay.io/good:1"},
                {"name": "bad", "image": "registry.invalid/bad:1"},
            ],
        },
        "status": {
            "containerStatuses": list(statuses),
            "initContainerStatuses": list(init_statuses),
            "conditions": list(conditions),
        },
    }


def waiting(name, reason, message="", image=""):
    return {
        "name": name,
        "image": image,
        "state": {"waiting": {"reason": reason, "message": message}},
    }


def running(name):
    return {"name": name, "state": {"running": {}}}


def test_reports_node_image_and_reason_for_each_failing_container():
    pods = [
        pod("p-b", "node-b", [running("good"), waiting("bad", "ImagePullBackOff", "back-off")]),
        pod("p-a", "node-a", [running("good"), waiting("bad", "ErrImagePull", "not found")]),
    ]
    assert pull_failures(pods) == [
        Failure(
            node="node-a",
            pod="p-a",
            container="bad",
            image="registry.invalid/bad:1",
            reason="ErrImagePull",
            message="not found",
        ),
        Failure(
            node="node-b",
            pod="p-b",
            container="bad",
            image="registry.invalid/bad:1",
            reason="ImagePullBackOff",
            message="back-off",
        ),
    ]


def test_progress_states_are_not_failures():
    pods = [
        pod("p", "n", [waiting("good", "ContainerCreating"), waiting("bad", "PodInitializing")])
    ]
    assert pull_failures(pods) == []


def test_init_container_failures_and_crashes_are_reported():
    pods = [
        pod(
            "p",
            "n",
            [],
            init_statuses=[
                {
                    "name": "copy-sleep",
                    "state": {"terminated": {"exitCode": 127, "reason": "Error"}},
                }
            ],
        )
    ]
    (failure,) = pull_failures(pods)
    assert failure.container == "copy-sleep"
    assert failure.image == "quay.io/kip:1"
    assert failure.reason == "Error"
    assert "127" in failure.message


def test_unscheduled_pods_report_the_scheduler_reason():
    pods = [
        pod(
            "p",
            "",
            [],
            conditions=[
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes",
                }
            ],
        )
    ]
    (failure,) = pull_failures(pods)
    assert failure.node == "(not scheduled)"
    assert (failure.reason, failure.message) == ("Unschedulable", "0/3 nodes")


def test_invalid_image_name_reason_is_kept():
    pods = [pod("p", "n", [waiting("bad", "InvalidImageName", "bad ref")])]
    assert pull_failures(pods)[0].reason == "InvalidImageName"
