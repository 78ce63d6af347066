"""Shared fixtures.

Cluster tests (everything under tests/cluster/, marked ``cluster`` automatically) share one local
control plane with 3 kwok nodes, ``node-0`` .. ``node-2``, started on first use. Tests that do not
ask for it never start it, so ``pytest -m "not cluster"`` needs no control-plane binaries.

Fixtures:
    cluster     session: the running ``localcluster.LocalCluster``; if it could not start,
                every test using it fails with the reason (start is attempted once).
    api_client  a ``kubernetes.client.ApiClient`` for the admin kubeconfig (CA verified).
    namespace   a fresh namespace enforcing Pod Security ``restricted``; deleted afterwards.
    add_node    ``add_node(name, labels=None, taints=None)`` adds a kwok node, waits until it is
                Ready and deletes it after the test, so the shared cluster stays at 3 plain nodes.
    controllers ``controllers(env)`` starts `imagepuller run` (tests/controller_process.py) with
                ``env``; every process started is killed after the test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.waiting import wait_until

CLUSTER_TESTS = Path(__file__).resolve().parent / "cluster"
CLUSTER_NODES = 3


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything under tests/cluster/ needs the control plane: mark it so that
    # `pytest -m "not cluster"` (make unit) deselects it.
    for item in items:
        if CLUSTER_TESTS in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from localcluster.cluster import LocalCluster

    # Under pytest's basetemp, so the component logs of the last runs are kept for debugging.
    workdir = tmp_path_factory.mktemp("localcluster")
    local = LocalCluster(workdir, nodes=CLUSTER_NODES)
    try:
        local.start()
    except Exception as exc:  # noqa: BLE001 - any reason is reported the same way
        # pytest caches a session fixture's failure: start is attempted once, and every test
        # using the fixture fails with this message.
        pytest.fail(
            f"the local Kubernetes cluster did not start: {exc}\n(logs in {workdir / 'logs'})",
            pytrace=False,
        )
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def api_client(cluster: object) -> Iterator[object]:
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def namespace(api_client: object) -> Iterator[str]:
    from kubernetes import client

    from tests.apiobjects import read_or_none

    core = client.CoreV1Api(api_client)
    name = f"t-{uuid.uuid4().hex[:8]}"
    labels = {
        f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
    }
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )

    # The serviceaccount controller creates it; until then pods are rejected.
    wait_until(
        lambda: read_or_none(core.read_namespaced_service_account, "default", name),
        30,
        f"ServiceAccount default in {name}",
    )
    try:
        yield name
    finally:
        # Not waited for: the namespace controller finishes it in the background.
        core.delete_namespace(name)


@pytest.fixture
def add_node(cluster: object) -> Iterator[Callable[..., str]]:
    added: list[str] = []

    def _add(
        name: str, labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None
    ) -> str:
        cluster.add_node(name, labels=labels, taints=taints)
        added.append(name)
        wait_until(lambda: name in cluster.ready_nodes(), 30, f"node {name} to be Ready")
        return name

    yield _add
    for name in added:
        cluster.delete_node(name)
    wait_until(
        lambda: not set(added) & set(cluster.ready_nodes()), 30, f"nodes {added} to be deleted"
    )


@pytest.fixture
def controllers() -> Iterator[Callable[[dict[str, str]], object]]:
    """``controllers(env)`` runs `imagepuller run` with ``env``; every one is killed after."""
    from tests.controller_process import ControllerProcess

    started: list[ControllerProcess] = []

    def start(env: dict[str, str]) -> ControllerProcess:
        process = ControllerProcess(env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
