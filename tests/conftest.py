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
    helm_tools  session: ``{"helm": path, "promtool": path}`` (hack/build-helm-tools.sh).
    controllers ``controllers(env)`` starts `imagepuller run` (tests/controller_process.py) with
                ``env``; every process started is killed after the test.

``kubectl`` in every test is the one built with the control plane, at its version (put first on
``PATH`` here, and named in the session header), never whatever kubectl the machine has.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.waiting import wait_until

CLUSTER_TESTS = Path(__file__).resolve().parent / "cluster"
REAL_NODE_TESTS = Path(__file__).resolve().parent / "realnode"
# Tests that run a tool built from the Go module proxy: helm and promtool
# (hack/build-helm-tools.sh), the OLM bundle validator (hack/build-bundle-validate.sh).
TOOL_TESTS = (
    Path(__file__).resolve().parent / "chart",
    Path(__file__).resolve().parent / "monitoring",
    Path(__file__).resolve().parent / "bundle",
)
# Tests that start a process (imagepuller, the static sleep) or wait on real sockets and time
# (trickling servers, idle connections): seconds each, kept out of the unit tier.
PROCESS_TESTS = Path(__file__).resolve().parent / "process"
CLUSTER_NODES = 3


def _use_built_kubectl(build: bool) -> Path | None:
    """Put the control plane's kubectl first on PATH (built first if ``build``); its path."""
    from localcluster.binaries import MissingBinariesError, find_kubectl

    try:
        kubectl = find_kubectl(build=build)
    except MissingBinariesError:
        if build:
            raise
        return None
    directory = str(kubectl.parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != directory:
        os.environ["PATH"] = directory + os.pathsep + os.environ.get("PATH", "")
    return kubectl


def kubectl_version(kubectl: Path) -> str:
    result = subprocess.run(
        [str(kubectl), "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if result.returncode != 0:
        return f"unknown ({result.stderr.strip()})"
    return str(json.loads(result.stdout)["clientVersion"]["gitVersion"])


def pytest_configure(config: pytest.Config) -> None:
    # `make test` builds the control plane (kubectl included) before pytest starts; the cluster
    # fixture builds it when it is missing.
    _use_built_kubectl(build=False)


def pytest_report_header(config: pytest.Config) -> str:
    from localcluster.binaries import MissingBinariesError, find_kubectl

    try:
        kubectl = find_kubectl(build=False)
    except MissingBinariesError:
        return "kubectl: not built yet (the cluster fixture builds it)"
    return f"kubectl: {kubectl_version(kubectl)} ({kubectl})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything under tests/cluster/ needs the control plane: mark it so that
    # `pytest -m "not cluster"` (make unit) deselects it.
    for item in items:
        parents = Path(item.path).resolve().parents
        if CLUSTER_TESTS in parents:
            item.add_marker(pytest.mark.cluster)
        if REAL_NODE_TESTS in parents:
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.real_node)
        if PROCESS_TESTS in parents:
            item.add_marker(pytest.mark.process)
        if any(directory in parents for directory in TOOL_TESTS):
            item.add_marker(pytest.mark.tools)
            if "cluster" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[object]:
    from localcluster.cluster import LocalCluster

    # Under pytest's basetemp, so the component logs of the last runs are kept for debugging.
    workdir = tmp_path_factory.mktemp("localcluster")
    local = LocalCluster(workdir, nodes=CLUSTER_NODES)
    try:
        kubectl = _use_built_kubectl(build=True)
        reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and kubectl is not None:
            reporter.write_line(f"cluster tests use kubectl {kubectl_version(kubectl)} ({kubectl})")
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


@pytest.fixture(scope="session")
def helm_tools() -> dict[str, Path]:
    """``{"helm": path, "promtool": path}``, built once (hack/build-helm-tools.sh) when missing;
    if they cannot be built, every test using them fails with the reason."""
    from localcluster.binaries import MissingBinariesError, find_helm_tools

    try:
        return find_helm_tools(build=True)
    except MissingBinariesError as exc:
        pytest.fail(f"helm and promtool are not available: {exc}", pytrace=False)


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
