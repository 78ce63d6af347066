"""`imagepuller status` against a fake cluster: what it reads, prints and exits with."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from imagepuller import objects, statuscmd
from imagepuller.apierrors import Forbidden, Transient
from imagepuller.cli import build_parser
from tests.unit.test_cachestatus import (
    ALL_READY,
    NAME,
    NAMESPACE,
    PULL_MESSAGE,
    READY,
    acceptance,
    daemonset,
    node,
    pod,
)


class FakeKube:
    """The reads `status` makes, from dicts; ``refuse`` maps a call's name to the error."""

    def __init__(
        self,
        daemonsets: list[dict[str, Any]],
        pods: dict[str, list[dict[str, Any]]],
        nodes: list[dict[str, Any]],
        refuse: dict[str, Exception] | None = None,
    ):
        self.daemonsets, self.pods, self.nodes = daemonsets, pods, nodes
        self.refuse = refuse or {}
        self.calls: list[tuple[Any, ...]] = []

    def _called(self, *call: Any) -> None:
        self.calls.append(call)
        if call[0] in self.refuse:
            raise self.refuse[call[0]]

    def get_daemonset(self, namespace, name):
        self._called("get_daemonset", namespace, name)
        found = [
            d
            for d in self.daemonsets
            if (d["metadata"]["namespace"], d["metadata"]["name"]) == (namespace, name)
        ]
        return found[0] if found else None

    def list_daemonsets(self, namespace, label_selector):
        self._called("list_daemonsets", namespace, label_selector)
        return list(self.daemonsets)

    def list_pods(self, namespace, label_selector):
        self._called("list_pods", namespace, label_selector)
        return self.pods.get(namespace, [])

    def list_nodes(self):
        self._called("list_nodes")
        return self.nodes


@pytest.fixture
def cluster(monkeypatch):
    """``cluster(fake)`` makes `status` read ``fake``; the kubeconfig path asked for and the
    retry bound are recorded in ``connected``."""
    connected: list[tuple[Any, ...]] = []

    def use(fake: FakeKube) -> list[tuple[Any, ...]]:
        monkeypatch.setattr(statuscmd, "load_api_client", lambda path: ("client", path))

        def make_kube(api_client, *, retry_for):
            connected.append((api_client, retry_for))
            return fake

        monkeypatch.setattr(statuscmd, "Kube", make_kube)
        return connected

    return use


def status(argv: list[str], env: dict[str, str] | None = None) -> int:
    """`imagepuller status ARGV`, parsed by the command line's own parser."""
    return statuscmd.status_command(build_parser().parse_args(["status", *argv]), env or {})


def acceptance_cluster() -> FakeKube:
    ds, pods, nodes = acceptance()
    return FakeKube([ds], {NAMESPACE: pods}, nodes)


def healthy_cluster(namespace: str = NAMESPACE) -> FakeKube:
    nodes = [node("node-0"), node("node-1")]
    pods = [pod("node-0", ALL_READY), pod("node-1", ALL_READY)]
    return FakeKube([daemonset(namespace=namespace, desired=2)], {namespace: pods}, nodes)


def test_acceptance_exits_1_and_the_table_shows_the_failure_first(cluster, capsys):
    fake = acceptance_cluster()
    connected = cluster(fake)
    assert status([]) == statuscmd.NOT_READY == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(
        f"{NAMESPACE}/{NAME}: 3 of 4 selected nodes hold all 2 images; 1 failing; "
        "1 not scheduled; last refresh 2026-11-28T20:00:00.000Z ("
    )
    assert out[1].split() == ["NODES", "IMAGES", "STATE", "DETAIL"]
    assert out[2].split()[:3] == ["node-3", "1/2", "failed"]
    assert out[2].endswith(f"b: ErrImagePull: {PULL_MESSAGE}")
    assert out[3].split()[:3] == ["node-4", "0/2", "not-scheduled"]
    assert out[4].split() == ["node-0,", "node-1,", "node-2", "2/2", "held"]
    assert len(out) == 5
    # The defaults, the DaemonSet's own selector for its pods, and a short retry bound.
    assert ("get_daemonset", NAMESPACE, NAME) in fake.calls
    assert ("list_pods", NAMESPACE, f"app.kubernetes.io/instance={NAME}") in fake.calls
    assert connected == [(("client", None), statuscmd.RETRY_SECONDS)]


def test_acceptance_as_json(cluster, capsys):
    cluster(acceptance_cluster())
    assert status(["-o", "json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["ready"] is False and len(document["pullers"]) == 1
    puller = document["pullers"][0]
    assert (puller["desired"], puller["holding"], puller["ready"]) == (4, 3, False)
    assert [(f["node"], f["image"], f["reason"]) for f in puller["failures"]] == [
        ("node-3", "quay.io/b:1", "ErrImagePull")
    ]
    assert puller["failures"][0]["message"] == PULL_MESSAGE
    assert [n["state"] for n in puller["nodes"]][3:] == ["failed", "not-scheduled"]


def test_every_node_holding_exits_0_and_yaml_reads_back(cluster, capsys):
    cluster(healthy_cluster())
    assert status(["-o", "yaml"]) == statuscmd.READY == 0
    document = yaml.safe_load(capsys.readouterr().out)
    assert document["ready"] is True
    assert document["pullers"][0]["holding"] == 2
    assert document["pullers"][0]["last_refresh"] == "2026-11-28T20:00:00.000Z"


def test_namespace_and_name_come_from_the_environment_then_the_flags(cluster, capsys):
    fake = FakeKube([], {}, [])
    connected = cluster(fake)
    env = {"NAMESPACE": " team-a ", "DAEMONSET_NAME": "cache", "KUBECONFIG": "/k/config"}
    assert status([], env) == 2
    assert status(["-n", "team-b", "--name", "other"], env) == 2
    assert [c for c in fake.calls if c[0] == "get_daemonset"] == [
        ("get_daemonset", "team-a", "cache"),
        ("get_daemonset", "team-b", "other"),
    ]
    assert connected[0][0] == ("client", "/k/config")
    capsys.readouterr()


def test_a_missing_daemonset_exits_2_naming_it(cluster, capsys):
    cluster(FakeKube([], {}, []))
    assert status(["-n", "team-a", "--name", "cache"]) == statuscmd.ACCESS == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("imagepuller status: no DaemonSet cache in namespace team-a")
    assert len(captured.err.splitlines()) == 1


def test_no_permission_on_daemonsets_exits_2_naming_the_permission(cluster, capsys):
    denied = Forbidden(
        "denied", permission="get daemonsets.apps in namespace k8s-image-puller", status=403
    )
    cluster(FakeKube([], {}, [], refuse={"get_daemonset": denied}))
    assert status([]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "imagepuller status: permission denied: you may not get daemonsets.apps in namespace "
        "k8s-image-puller"
    )
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_an_unreachable_cluster_exits_2_with_one_line(cluster, capsys):
    broken = Transient("list pods in namespace k8s-image-puller failed (HTTP 503): down")
    fake = acceptance_cluster()
    fake.refuse = {"list_pods": broken}
    cluster(fake)
    assert status([]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"imagepuller status: {broken}\n"


def test_no_credentials_exit_2(monkeypatch, capsys):
    def no_client(path):
        raise statuscmd.KubeError("no Kubernetes credentials: set KUBECONFIG")

    monkeypatch.setattr(statuscmd, "load_api_client", no_client)
    assert status([]) == 2
    assert (
        capsys.readouterr().err == "imagepuller status: no Kubernetes credentials: set KUBECONFIG\n"
    )


def test_without_access_to_nodes_the_status_says_what_it_shows(cluster, capsys):
    fake = healthy_cluster()
    fake.refuse = {"list_nodes": Forbidden("denied", permission="list nodes")}
    cluster(fake)
    assert status([]) == 0
    out = capsys.readouterr().out
    assert "note: nodes could not be read (no permission to list nodes)" in out
    assert "node-0, node-1" in out


def test_all_namespaces_shows_every_puller_and_fails_if_one_is_not_ready(cluster, capsys):
    failing = acceptance_cluster()
    # team-b holds everything on the same nodes (node-4's taint keeps it off there too).
    ready = daemonset(namespace="team-b", desired=4)
    fake = FakeKube(
        [ready, *failing.daemonsets],  # listed unsorted: printed by namespace
        {**failing.pods, "team-b": [pod(f"node-{i}", ALL_READY) for i in range(4)]},
        failing.nodes,
    )
    cluster(fake)
    assert status(["-A", "-o", "json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert [(p["namespace"], p["ready"]) for p in document["pullers"]] == [
        (NAMESPACE, False),
        ("team-b", True),
    ]
    assert ("list_daemonsets", None, "app.kubernetes.io/managed-by=imagepuller") in fake.calls
    assert [c for c in fake.calls if c[0] == "list_nodes"] == [("list_nodes",)]  # read once

    assert status(["-A"]) == 1
    out = capsys.readouterr().out
    assert out.count(f"/{NAME}: ") == 2 and out.endswith("\n1 of 2 pullers ready\n")


def test_all_namespaces_with_every_puller_ready_exits_0(cluster, capsys):
    cluster(healthy_cluster("team-b"))
    assert status(["-A"]) == 0
    assert capsys.readouterr().out.startswith(f"team-b/{NAME}: 2 of 2 selected nodes hold")


def test_all_namespaces_finding_no_puller_exits_1(cluster, capsys):
    cluster(FakeKube([], {}, []))
    assert status(["-A"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no DaemonSet labelled app.kubernetes.io/managed-by=imagepuller" in captured.err


def test_all_namespaces_without_permission_to_list_daemonsets_exits_2(cluster, capsys):
    denied = Forbidden("denied", permission="list daemonsets.apps")
    cluster(FakeKube([], {}, [], refuse={"list_daemonsets": denied}))
    assert status(["-A"]) == 2
    assert "you may not list daemonsets.apps" in capsys.readouterr().err


def test_all_namespaces_with_a_namespace_is_a_usage_error(capsys):
    assert status(["-A", "-n", "x"]) == 2
    assert "cannot be combined" in capsys.readouterr().err


def test_an_unknown_output_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        status(["-o", "wide"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_the_help_names_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["status", "--help"])
    text = capsys.readouterr().out
    assert "Exit codes: 0 every selected node holds every image" in text
    assert "--all-namespaces" in text and "{table,json,yaml}" in text


def test_label_selector_in_the_apis_syntax():
    selector = {
        "matchLabels": {"app": "x"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "b"]},
            {"key": "env", "operator": "NotIn", "values": ["dev"]},
            {"key": "has", "operator": "Exists"},
            {"key": "not", "operator": "DoesNotExist"},
        ],
    }
    assert objects.label_selector(selector) == "app=x,tier in (a,b),env notin (dev),has,!not"


def test_a_zero_node_puller_exits_1(cluster, capsys):
    ds = daemonset(desired=0, pod_spec={"nodeSelector": {"disktype": "ssd"}})
    cluster(FakeKube([ds], {}, [node("node-0")]))
    assert status([]) == 1
    assert "0 of 0 selected nodes hold all 2 images" in capsys.readouterr().out


def test_a_pod_pulling_keeps_it_at_1(cluster, capsys):
    ds = daemonset(desired=1)
    pods = {NAMESPACE: [pod("node-0", {"a": READY, "b": ("ContainerCreating", "")})]}
    cluster(FakeKube([ds], pods, [node("node-0")]))
    assert status([]) == 1
    assert "pulling  b: ContainerCreating" in capsys.readouterr().out


def test_a_ready_pod_no_controller_owns_does_not_make_the_puller_ready(cluster, capsys):
    """A pod someone made with the puller's labels, owned by nothing, on the one node whose
    own pod is missing: the node does not hold the images, and `status` exits 1."""
    stranger = pod("node-1", ALL_READY)
    del stranger["metadata"]["ownerReferences"]
    fake = FakeKube(
        [daemonset(desired=2)],
        {NAMESPACE: [pod("node-0", ALL_READY), stranger]},
        [node("node-0"), node("node-1")],
    )
    cluster(fake)
    assert status(["-o", "json"]) == statuscmd.NOT_READY
    document = json.loads(capsys.readouterr().out)
    (puller,) = document["pullers"]
    assert (puller["holding"], puller["desired"]) == (1, 2)
