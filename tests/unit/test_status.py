"""Why a DaemonSet is not ready: the pods' reasons, and FailedCreate for pods never created."""

from __future__ import annotations

from imagepuller.apierrors import Forbidden
from imagepuller.status import why_not_ready

DAEMONSET = {
    "metadata": {"uid": "u1", "generation": 1},
    "status": {"observedGeneration": 1, "desiredNumberScheduled": 3},
}
FAILING_POD = {
    "metadata": {"name": "p1"},
    "spec": {"nodeName": "node-1", "containers": [{"name": "a", "image": "quay.io/a:1"}]},
    "status": {
        "containerStatuses": [
            {"name": "a", "state": {"waiting": {"reason": "ErrImagePull", "message": "no"}}}
        ]
    },
}


class Kube:
    def __init__(self, pods, events, refuse_events=False):
        self.pods, self.events, self.refuse_events = pods, events, refuse_events
        self.selectors: list[str] = []

    def list_pods(self, namespace, label_selector):
        self.selectors.append(label_selector)
        return self.pods

    def list_events(self, namespace, field_selector):
        self.selectors.append(field_selector)
        if self.refuse_events:
            raise Forbidden("denied", permission="list events in namespace ns")
        return self.events


def test_pods_that_could_not_be_created_are_reported_once_per_reason_with_a_count():
    quota = "pods is forbidden: exceeded quota: no-pods"
    kube = Kube([FAILING_POD], [{"message": quota, "count": 3}, {"message": quota}])
    failures = why_not_ready(kube, "ns", {"app": "x", "tier": "y"}, DAEMONSET)
    assert [(f.node, f.reason) for f in failures] == [
        ("node-1", "ErrImagePull"),
        ("", "FailedCreate"),
    ]
    assert failures[1].message == quota and failures[1].times == 4
    assert kube.selectors == ["app=x,tier=y", "involvedObject.uid=u1,reason=FailedCreate"]


def test_events_are_not_read_when_every_pod_exists_and_a_refusal_is_not_fatal():
    three = [FAILING_POD] * 3
    assert len(why_not_ready(Kube(three, []), "ns", {"a": "b"}, DAEMONSET)) == 3
    refused = Kube([FAILING_POD], [], refuse_events=True)
    assert [f.reason for f in why_not_ready(refused, "ns", {"a": "b"}, DAEMONSET)] == [
        "ErrImagePull"
    ]


def test_a_daemonset_its_controller_has_not_taken_in_is_reported_by_its_warnings():
    stuck = {
        "metadata": {"uid": "u1", "generation": 2},
        "status": {},  # the controller never wrote a status: Pulling 0/0 for ever, before
    }
    too_large = {"reason": "FailedUpdate", "message": "etcdserver: request is too large"}
    kube = Kube([], [too_large, too_large])
    failures = why_not_ready(kube, "ns", {"a": "b"}, stuck)
    assert [(f.reason, f.message, f.times) for f in failures] == [
        ("FailedUpdate", "etcdserver: request is too large", 2)
    ]
    assert kube.selectors[-1] == "involvedObject.uid=u1,type=Warning"
    caught_up = Kube([], [too_large])
    assert (
        why_not_ready(caught_up, "ns", {"a": "b"}, {**stuck, "status": {"observedGeneration": 2}})
        == []
    )
