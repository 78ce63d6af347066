"""Which node holds which image: the model from API objects (dicts) and its table."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imagepuller import cachestatus as cs
from imagepuller import cachetable, nodeselection
from imagepuller.apitime import parse_time
from imagepuller.failures import Failure
from imagepuller.nodepods import ImageStatus

NAMESPACE = "k8s-image-puller"
NAME = "kubernetes-image-puller"
UID = "ds-uid"
IMAGES = (("a", "quay.io/a:1"), ("b", "quay.io/b:1"))
REFRESHED = "2026-11-28T20:00:00.000Z"
NOW = parse_time("2026-11-28T20:12:00Z")
PULL_MESSAGE = 'failed to pull and unpack image "quay.io/b:1": quay.io/b:1: not found'

READY = "ready"  # a container status: running and ready
RUNNING = "running"  # running, not ready
NO_STATUS = None  # the kubelet has not reported on it yet


def daemonset(
    images: tuple[tuple[str, str], ...] = IMAGES,
    *,
    namespace: str = NAMESPACE,
    name: str = NAME,
    desired: int | None = 4,
    pod_spec: dict[str, Any] | None = None,
    refreshed: str | None = REFRESHED,
) -> dict[str, Any]:
    annotations = {"imagepuller.io/refreshed-at": refreshed} if refreshed else {}
    spec = {
        "initContainers": [{"name": "copy-sleep", "image": "quay.io/kip:1"}],
        "containers": [{"name": n, "image": i} for n, i in images],
        **(pod_spec or {}),
    }
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": namespace, "uid": UID, "annotations": annotations},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/instance": name}},
            "template": {"spec": spec},
        },
        "status": {},
    }
    if desired is not None:
        body["status"]["desiredNumberScheduled"] = desired
    return body


def node(name: str, labels: dict[str, str] | None = None, taints: list[dict] | None = None):
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def container_status(name: str, state: Any) -> dict[str, Any] | None:
    """``state``: READY, RUNNING, NO_STATUS, or (reason, message) for a waiting container."""
    if state is NO_STATUS:
        return None
    if state == READY:
        return {"name": name, "ready": True, "state": {"running": {}}}
    if state == RUNNING:
        return {"name": name, "ready": False, "state": {"running": {}}}
    reason, message = state
    return {
        "name": name,
        "ready": False,
        "state": {"waiting": {"reason": reason, "message": message}},
    }


def pod(
    node_name: str,
    states: dict[str, Any],
    *,
    created: str = "2026-11-28T20:00:00Z",
    images: tuple[tuple[str, str], ...] = IMAGES,
    deleting: bool = False,
    owner: str = UID,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": f"puller-{node_name}-{created[11:19].replace(':', '')}",
        "creationTimestamp": created,
        "ownerReferences": [{"kind": "DaemonSet", "uid": owner, "controller": True}],
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-28T20:05:00Z"
    statuses = [container_status(n, states.get(n, NO_STATUS)) for n, _ in images]
    return {
        "metadata": metadata,
        "spec": {
            "nodeName": node_name,
            "initContainers": [{"name": "copy-sleep", "image": "quay.io/kip:1"}],
            "containers": [{"name": n, "image": i} for n, i in images],
        },
        "status": status or {"containerStatuses": [s for s in statuses if s]},
    }


ALL_READY = {"a": READY, "b": READY}
GPU_TAINT = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


def acceptance() -> tuple[dict, list[dict], list[dict]]:
    """5 nodes; image b fails on node-3 only; node-4 is kept off by a taint dedicated=gpu."""
    nodes = [node(f"node-{i}") for i in range(4)] + [node("node-4", taints=[GPU_TAINT])]
    pods = [pod(f"node-{i}", ALL_READY) for i in range(3)]
    pods.append(pod("node-3", {"a": READY, "b": ("ErrImagePull", PULL_MESSAGE)}))
    return daemonset(), pods, nodes


def by_node(status: cs.PullerStatus) -> dict[str, cs.NodeStatus]:
    return {n.node: n for n in status.nodes}


# --- the acceptance scenario -------------------------------------------------------------------


def test_acceptance_counts_the_failure_and_the_tainted_node():
    status = cs.summarize(*acceptance())
    assert (status.desired, status.holding, status.ready) == (4, 3, False)
    assert status.failures == (Failure("node-3", "quay.io/b:1", "b", "ErrImagePull", PULL_MESSAGE),)
    nodes = by_node(status)
    assert [nodes[f"node-{i}"].state for i in range(5)] == [
        "held",
        "held",
        "held",
        "failed",
        "not-scheduled",
    ]
    assert (nodes["node-3"].holds, nodes["node-3"].of) == (1, 2)
    assert nodes["node-3"].images["a"].state == "held"
    assert nodes["node-3"].images["b"] == ImageStatus("failed", "ErrImagePull", PULL_MESSAGE)
    assert nodes["node-4"].selected is False
    assert nodes["node-4"].why == "taint dedicated=gpu:NoSchedule"
    assert status.counts == {"failed": 1, "pulling": 0, "not_scheduled": 1, "held": 3}
    assert status.last_refresh == REFRESHED
    assert status.nodes_without_pods_shown is True and status.notes == ()


def test_acceptance_table_shows_the_failing_row_first_and_the_held_nodes_grouped():
    table = cachetable.render_table(cs.summarize(*acceptance()), now=NOW)
    assert table == (
        "k8s-image-puller/kubernetes-image-puller: 3 of 4 selected nodes hold all 2 images; "
        "1 failing; 1 not scheduled; last refresh 2026-11-28T20:00:00.000Z (12m ago)\n"
        "NODES                   IMAGES  STATE          DETAIL\n"
        f"node-3                  1/2     failed         b: ErrImagePull: {PULL_MESSAGE}\n"
        "node-4                  0/2     not-scheduled  taint dedicated=gpu:NoSchedule\n"
        "node-0, node-1, node-2  2/2     held\n"
    )


def test_acceptance_json_has_the_counts_the_failure_and_every_node():
    document = json.loads(json.dumps(cs.summarize(*acceptance()).to_dict()))
    assert list(document) == [
        "namespace",
        "name",
        "ready",
        "desired",
        "holding",
        "last_refresh",
        "images",
        "counts",
        "nodes_without_pods_shown",
        "notes",
        "failures",
        "nodes",
    ]
    assert (document["namespace"], document["name"]) == (NAMESPACE, NAME)
    assert (document["ready"], document["desired"], document["holding"]) == (False, 4, 3)
    assert document["images"] == [
        {"name": "a", "image": "quay.io/a:1"},
        {"name": "b", "image": "quay.io/b:1"},
    ]
    assert document["failures"] == [
        {
            "node": "node-3",
            "image": "quay.io/b:1",
            "container": "b",
            "reason": "ErrImagePull",
            "message": PULL_MESSAGE,
            "still_held": False,
        }
    ]
    node_4 = document["nodes"][4]
    assert node_4["node"] == "node-4" and node_4["state"] == "not-scheduled"
    assert node_4["selected"] is False and "dedicated=gpu" in node_4["why"]
    assert document["nodes"][3]["images"]["b"] == {
        "state": "failed",
        "reason": "ErrImagePull",
        "message": PULL_MESSAGE,
    }


def test_every_node_holding_every_image_is_ready():
    nodes = [node(f"node-{i}") for i in range(3)]
    status = cs.summarize(daemonset(), [pod(f"node-{i}", ALL_READY) for i in range(3)], nodes)
    assert (status.desired, status.holding, status.ready, status.failures) == (3, 3, True, ())


# --- pods: what a node holds -----------------------------------------------------------------


def test_during_a_rolling_refresh_the_old_ready_pod_still_holds():
    old = pod("node-0", ALL_READY, created="2026-11-28T19:00:00Z")
    new = pod("node-0", {"a": ("ContainerCreating", ""), "b": NO_STATUS})
    failing = pod("node-1", {"a": ("ImagePullBackOff", "Back-off")}, created="2026-11-28T20:01:00Z")
    pods = [old, new, pod("node-1", ALL_READY, created="2026-11-28T19:00:00Z"), failing]
    status = cs.summarize(daemonset(), pods, [node("node-0"), node("node-1")])
    assert [(n.state, n.holds) for n in status.nodes] == [("held", 2), ("held", 2)]
    assert status.ready is True
    # The new pod failing to pull is not hidden behind the old one that still holds.
    assert status.failures == (
        Failure("node-1", "quay.io/a:1", "a", "ImagePullBackOff", "Back-off", still_held=True),
    )
    assert status.nodes[1].images["a"] == ImageStatus("held", "ImagePullBackOff", "Back-off")
    assert status.nodes[1].detail == "refresh failing: a: ImagePullBackOff: Back-off"
    assert status.nodes[0].detail == ""


def test_a_refresh_pod_blocked_as_a_whole_is_reported_while_the_old_pod_holds():
    old = pod("node-0", ALL_READY, created="2026-11-28T19:00:00Z")
    new = pod("node-0", {"a": NO_STATUS, "b": NO_STATUS})
    new["status"]["phase"] = "Failed"
    new["status"]["reason"] = "Evicted"
    status = cs.summarize(daemonset(desired=1), [old, new], [node("node-0")])
    assert (status.nodes[0].state, status.ready) == ("held", True)
    assert status.failures == (Failure("node-0", "", "", "Evicted", "", still_held=True),)


def test_a_new_pod_alone_is_pulling_with_the_kubelets_reason():
    pods = [pod("node-0", {"a": ("ContainerCreating", ""), "b": RUNNING})]
    status = cs.summarize(daemonset(desired=1), pods, [node("node-0")])
    node_0 = status.nodes[0]
    assert (node_0.state, node_0.holds) == ("pulling", 0)
    assert node_0.images["a"] == ImageStatus("pulling", "ContainerCreating", "")
    assert node_0.images["b"].reason == "NotReady"
    assert status.ready is False and status.failures == ()
    assert "node-0  0/2     pulling  a: ContainerCreating (+1 more)" in cachetable.render_table(
        status
    )


def test_pods_being_deleted_hold_nothing():
    pods = [pod("node-0", ALL_READY, deleting=True), pod("node-1", ALL_READY)]
    status = cs.summarize(daemonset(desired=2), pods, [node("node-0"), node("node-1")])
    node_0 = by_node(status)["node-0"]
    assert (node_0.state, node_0.holds, node_0.selected) == ("pulling", 0, True)
    assert node_0.images["a"].message == "no pod yet"
    assert (status.holding, status.ready) == (1, False)


def test_a_pod_running_an_earlier_image_under_the_same_name_does_not_hold_the_new_one():
    earlier = (("a", "quay.io/a:1"), ("b", "quay.io/b:0"))
    pods = [pod("node-0", ALL_READY, images=earlier)]
    status = cs.summarize(daemonset(desired=1), pods, [node("node-0")])
    assert status.nodes[0].holds == 1 and status.nodes[0].images["b"].state == "pulling"


def test_pods_of_another_controller_are_not_counted():
    pods = [pod("node-0", ALL_READY, owner="someone-else")]
    status = cs.summarize(daemonset(desired=1), pods, [node("node-0")])
    assert status.nodes[0].state == "pulling" and status.holding == 0


@pytest.mark.parametrize(
    "reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerError"]
)
def test_pull_failure_reasons_fail(reason):
    pods = [pod("node-0", {"a": READY, "b": (reason, "why")})]
    status = cs.summarize(daemonset(desired=1), pods, [node("node-0")])
    assert status.nodes[0].state == "failed"
    assert status.failures == (Failure("node-0", "quay.io/b:1", "b", reason, "why"),)


def test_a_failing_init_container_fails_the_node_and_names_its_own_image():
    init_failing = {
        "initContainerStatuses": [
            {
                "name": "copy-sleep",
                "ready": False,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}},
            }
        ],
        "containerStatuses": [
            container_status("a", ("PodInitializing", "")),
            container_status("b", ("PodInitializing", "")),
        ],
    }
    status = cs.summarize(
        daemonset(desired=1), [pod("node-0", {}, status=init_failing)], [node("node-0")]
    )
    assert status.nodes[0].state == "failed"
    assert status.failures == (
        Failure("node-0", "quay.io/kip:1", "copy-sleep", "ImagePullBackOff", "Back-off"),
    )
    assert status.nodes[0].images["a"] == ImageStatus(
        "failed", "ImagePullBackOff", "init container copy-sleep: Back-off"
    )


def test_an_unschedulable_pod_fails_on_the_node_its_affinity_names():
    unscheduled = pod("node-0", {}, status={})
    del unscheduled["spec"]["nodeName"]
    unscheduled["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchFields": [
                            {"key": "metadata.name", "operator": "In", "values": ["node-0"]}
                        ]
                    }
                ]
            }
        }
    }
    unscheduled["status"] = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient memory.",
            }
        ],
    }
    status = cs.summarize(daemonset(desired=1), [unscheduled], [node("node-0")])
    assert status.nodes[0].state == "failed"
    assert [(f.node, f.container, f.reason) for f in status.failures] == [
        ("node-0", "", "Unschedulable")
    ]


# --- nodes: which ones the pods are meant for ------------------------------------------------


def test_a_node_not_matching_the_node_selector_is_not_scheduled_and_not_desired():
    ds = daemonset(desired=1, pod_spec={"nodeSelector": {"disktype": "ssd"}})
    nodes = [node("node-0", {"disktype": "ssd"}), node("node-1", {"disktype": "hdd"})]
    status = cs.summarize(ds, [pod("node-0", ALL_READY)], nodes)
    node_1 = by_node(status)["node-1"]
    assert (node_1.state, node_1.selected, node_1.why) == (
        "not-scheduled",
        False,
        "selector disktype=ssd",
    )
    assert (status.desired, status.holding, status.ready) == (1, 1, True)


def test_a_selected_node_without_a_pod_yet_is_pulling():
    nodes = [node("node-0"), node("node-1")]
    status = cs.summarize(daemonset(desired=2), [pod("node-0", ALL_READY)], nodes)
    node_1 = by_node(status)["node-1"]
    assert (node_1.state, node_1.selected, node_1.images["a"].message) == (
        "pulling",
        True,
        "no pod yet",
    )
    assert (status.desired, status.holding, status.ready) == (2, 1, False)


def affinity(*expressions: dict[str, Any]) -> dict[str, Any]:
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": list(expressions)}]
                }
            }
        }
    }


@pytest.mark.parametrize(
    ("expression", "selected"),
    [
        ({"key": "zone", "operator": "In", "values": ["a", "b"]}, ["zone-a"]),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, ["plain", "zone-c"]),
        ({"key": "zone", "operator": "Exists"}, ["zone-a", "zone-c"]),
        ({"key": "zone", "operator": "DoesNotExist"}, ["plain"]),
        ({"key": "cores", "operator": "Gt", "values": ["4"]}, ["zone-c"]),
    ],
)
def test_required_node_affinity_selects_nodes(expression, selected):
    nodes = [
        node("plain"),
        node("zone-a", {"zone": "a", "cores": "4"}),
        node("zone-c", {"zone": "c", "cores": "8"}),
    ]
    status = cs.summarize(daemonset(pod_spec=affinity(expression)), [], nodes)
    assert [n.node for n in status.nodes if n.selected] == selected
    assert {n.why for n in status.nodes if not n.selected} == {
        "affinity: no required node affinity term matches"
    }
    assert status.desired == len(selected)


@pytest.mark.parametrize(
    ("taint", "tolerations", "why"),
    [
        (GPU_TAINT, [], "taint dedicated=gpu:NoSchedule"),
        ({"key": "maint", "effect": "NoExecute"}, [], "taint maint:NoExecute"),
        (GPU_TAINT, [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}], None),
        (GPU_TAINT, [{"key": "dedicated", "operator": "Exists"}], None),
        (GPU_TAINT, [{"operator": "Exists"}], None),
        (GPU_TAINT, [{"key": "dedicated", "value": "cpu"}], "taint dedicated=gpu:NoSchedule"),
        (
            GPU_TAINT,
            [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}],
            "taint dedicated=gpu:NoSchedule",
        ),
        ({"key": "soft", "effect": "PreferNoSchedule"}, [], None),
        ({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}, [], None),
    ],
)
def test_taints_and_tolerations(taint, tolerations, why):
    pod_spec = {"tolerations": tolerations} if tolerations else {}
    assert nodeselection.why_not_selected(pod_spec, node("n", taints=[taint])) == why


def test_every_reason_a_node_is_left_out_is_given():
    pod_spec = {"nodeSelector": {"disktype": "ssd"}, **affinity({"key": "z", "operator": "Exists"})}
    why = nodeselection.why_not_selected(pod_spec, node("n", taints=[GPU_TAINT]))
    assert why == (
        "selector disktype=ssd; affinity: no required node affinity term matches; "
        "taint dedicated=gpu:NoSchedule"
    )


def test_no_desired_node_is_not_ready_nothing_is_cached():
    ds = daemonset(desired=0, pod_spec={"nodeSelector": {"disktype": "ssd"}})
    status = cs.summarize(ds, [], [node("node-0")])
    assert (status.desired, status.holding, status.ready) == (0, 0, False)
    assert cachetable.summary_line(status, now=NOW).startswith(
        f"{NAMESPACE}/{NAME}: 0 of 0 selected nodes hold all 2 images; 1 not scheduled;"
    )


# --- without access to nodes -----------------------------------------------------------------


def test_without_nodes_only_nodes_with_a_pod_are_shown_and_a_note_says_so():
    pods = [pod("node-0", ALL_READY), pod("node-1", {"b": ("ErrImagePull", "no")})]
    status = cs.summarize(daemonset(desired=3), pods, None)
    assert [n.node for n in status.nodes] == ["node-0", "node-1"]
    assert (status.desired, status.holding, status.ready) == (3, 1, False)
    assert status.nodes_without_pods_shown is False
    assert len(status.notes) == 1 and "1 of the 3 desired nodes have no pod yet" in status.notes[0]
    table = cachetable.render_table(status, now=NOW)
    assert table.splitlines()[-1] == f"note: {status.notes[0]}"
    assert status.to_dict()["nodes_without_pods_shown"] is False


def test_a_disagreement_with_the_daemonset_controller_is_noted():
    status = cs.summarize(daemonset(desired=5), [], [node("node-0")])
    assert status.desired == 1
    assert status.notes == (
        "the DaemonSet controller counts 5 desired nodes, 1 by the nodes read now "
        "(a node may have just joined, left or changed)",
    )


# --- the table on many nodes -----------------------------------------------------------------


def test_a_thousand_nodes_fit_in_a_few_rows_failing_first():
    nodes = [node(f"node-{i}") for i in range(1000)]
    failing = {17, 999}
    pulling = {500}
    pods = []
    for i in range(1000):
        if i in failing:
            pods.append(pod(f"node-{i}", {"a": READY, "b": ("ErrImagePull", PULL_MESSAGE)}))
        elif i not in pulling:
            pods.append(pod(f"node-{i}", ALL_READY))
    status = cs.summarize(daemonset(desired=1000), pods, nodes)
    assert (status.desired, status.holding, len(status.failures)) == (1000, 997, 2)
    lines = cachetable.render_table(status, now=NOW).splitlines()
    assert lines[0].startswith(
        f"{NAMESPACE}/{NAME}: 997 of 1000 selected nodes hold all 2 images; 2 failing; 1 pulling;"
    )
    rows = lines[2:]
    assert len(rows) == 3
    assert rows[0].startswith("node-17, node-999 ") and " failed " in rows[0]
    assert rows[1].startswith("node-500 ") and "no pod yet" in rows[1]
    assert rows[2].startswith("node-0, node-1, node-2, node-3, ... (+993) ")
    assert rows[2].split()[-2:] == ["2/2", "held"]


def test_rows_beyond_max_rows_are_left_off_and_counted_failing_ones_kept():
    nodes = [node(f"node-{i}") for i in range(30)]
    pods = [
        pod(f"node-{i}", {"a": READY, "b": ("ErrImagePull", f"error {i}")}) for i in range(10)
    ] + [pod(f"node-{i}", ALL_READY) for i in range(10, 30)]
    status = cs.summarize(daemonset(desired=30), pods, nodes)
    lines = cachetable.render_table(status, max_rows=4, now=NOW).splitlines()
    rows = lines[2:-1]
    assert len(rows) == 4 and all(" failed " in row for row in rows)
    assert rows[0].startswith("node-0 ") and "error 0" in rows[0]
    assert lines[-1] == "... 7 more rows (26 nodes) left off; -o json lists every node"


def test_long_messages_are_cut_to_one_line():
    message = "first line\n" + "x" * 300
    pods = [pod("node-0", {"a": READY, "b": ("ErrImagePull", message)})]
    status = cs.summarize(daemonset(desired=1), pods, [node("node-0")])
    row = cachetable.render_table(status, now=NOW).splitlines()[2]
    detail = row.split("failed  ", 1)[1]
    assert detail.startswith("b: ErrImagePull: first line xxx") and detail.endswith("...")
    assert len(detail) == cs.DETAIL_WIDTH
    assert status.failures[0].message == message  # JSON keeps it whole


# --- several pullers, and small helpers ------------------------------------------------------


def test_render_many_gives_one_block_per_puller_and_counts_the_ready_ones():
    ready = cs.summarize(
        daemonset(namespace="team-a", desired=1), [pod("node-0", ALL_READY)], [node("node-0")]
    )
    not_ready = cs.summarize(daemonset(namespace="team-b", desired=1), [], [node("node-0")])
    text = cachetable.render_many([ready, not_ready], now=NOW)
    blocks = text.split("\n\n")
    assert len(blocks) == 3
    assert blocks[0].startswith(f"team-a/{NAME}: 1 of 1 selected node holds all 2 images")
    assert blocks[1].startswith(f"team-b/{NAME}: 0 of 1 selected node holds all 2 images")
    assert blocks[2] == "1 of 2 pullers ready\n"
    assert cachetable.render_many([]) == "no puller found\n"


def test_no_refresh_recorded_is_said():
    status = cs.summarize(daemonset(refreshed=None), [], [])
    assert status.last_refresh is None
    assert cachetable.summary_line(status).endswith("; no refresh recorded")
    assert cachetable.render_table(status).splitlines()[1] == "(no node to show)"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(45, "45s ago"), (12 * 60 + 5, "12m ago"), (3 * 3600, "3h ago"), (2 * 86400 + 1, "2d ago")],
)
def test_age(seconds, shown):
    assert cachetable.age(1000.0, 1000.0 + seconds) == shown


def test_nodes_sort_naturally_and_images_leave_out_the_init_container():
    assert sorted(["node-10", "node-2", "node-1"], key=cs.natural_key) == [
        "node-1",
        "node-2",
        "node-10",
    ]
    spec = {"containers": [{"name": "copy-sleep", "image": "k"}, {"name": "a", "image": "i"}]}
    assert cs.template_images(spec) == (cs.Image("a", "i"),)


def test_pods_owned_by_nothing_are_not_counted():
    """A pod matching the selector that no controller owns (made by hand, or orphaned) is not
    the DaemonSet's: it holds nothing for it."""
    ownerless = pod("node-0", ALL_READY)
    del ownerless["metadata"]["ownerReferences"]
    status = cs.summarize(daemonset(desired=1), [ownerless], [node("node-0")])
    assert status.nodes[0].state == "pulling" and status.holding == 0
    assert status.failures == ()


def test_a_pod_our_daemonset_owns_without_being_its_controller_is_not_counted():
    shared = pod("node-0", ALL_READY)
    shared["metadata"]["ownerReferences"] = [{"kind": "DaemonSet", "uid": UID}]
    status = cs.summarize(daemonset(desired=1), [shared], [node("node-0")])
    assert status.holding == 0


@pytest.mark.parametrize(
    ("cores", "selected"),
    [
        ("8", True),
        ("1_0", False),  # Python's int() reads 10; the API's strconv.ParseInt refuses it
        ("８", False),  # a fullwidth digit
        ("٨", False),  # an Arabic-Indic digit
        ("99999999999999999999", False),  # beyond int64: not a number to the API
        ("0008", True),
    ],
)
def test_gt_reads_a_label_as_the_api_does(cores, selected):
    nodes = [node("n", {"cores": cores})]
    spec = affinity({"key": "cores", "operator": "Gt", "values": ["4"]})
    status = cs.summarize(daemonset(pod_spec=spec), [], nodes)
    assert status.nodes[0].selected is selected


@pytest.mark.parametrize(("bound", "selected"), [("1_0", False), ("+9", True), ("-1", False)])
def test_lt_reads_its_bound_as_the_api_does(bound, selected):
    nodes = [node("n", {"cores": "8"})]
    spec = affinity({"key": "cores", "operator": "Lt", "values": [bound]})
    status = cs.summarize(daemonset(pod_spec=spec), [], nodes)
    assert status.nodes[0].selected is selected
