"""A real Kubernetes control plane with simulated nodes, as plain local processes.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are the real thing (validation,
RBAC, Pod Security admission, the daemonset controller, the garbage collector, ...). Nodes and
their kubelets are simulated by kwok, which makes pods Running/Ready, fails pulls of images under
``registry.invalid/`` and finishes pod deletion (see kwok-stages.yaml).

Everything listens on 127.0.0.1 on free ports, all state lives under ``workdir``, and every log
goes to ``workdir/logs/<component>.log``.

    with LocalCluster(Path(tmp), nodes=3) as cluster:
        subprocess.run(["kubectl", "get", "nodes"], env={"KUBECONFIG": str(cluster.kubeconfig)})
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .binaries import find_binaries, find_node_stack
from .host import HostChanges
from .pki import ClusterCA
from .process import Process, free_ports, rss_mib, tail, wait_for
from .realnode import RealNode, node_ip, short_socket_dir
from .registry import Registry, push_image, tar_layer

STAGES_FILE = Path(__file__).resolve().parent / "kwok-stages.yaml"

# Nodes that kwok manages carry this annotation (kwok runs with
# --manage-nodes-with-annotation-selector). No kwok taint: DaemonSet pods must land on them.
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")

# Enough room for many containers per node (each pod of the puller has one per image).
NODE_RESOURCES = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"}

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

# The API server's audit policy: writes made as a ServiceAccount, one line each (Metadata level,
# when answered). Every component and the tests' own clients use the static admin token, so
# this logs nothing but the writes of a process a test runs under a ServiceAccount's token:
# what that process sent, counted by the API server itself (tests/cluster/test_split_brain.py).
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "userGroups": ["system:serviceaccounts"],
            "verbs": ["create", "update", "patch", "delete", "deletecollection"],
        },
        {"level": "None"},
    ],
}


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


def _connects(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=2):
        return True


class LocalCluster:
    """A local control plane plus ``nodes`` kwok nodes named ``node-0``, ``node-1``, ...

    Attributes available after start(): ``kubeconfig`` (admin kubeconfig file), ``server``
    (https URL of the API server), ``ca_file``, ``token`` (admin bearer token, system:masters),
    ``audit_log`` (JSON lines: every write made as a ServiceAccount, see AUDIT_POLICY).
    """

    def __init__(
        self,
        workdir: Path,
        nodes: int = 3,
        node_prefix: str = "node-",
        real_nodes: int = 0,
        kubelet_config: dict[str, Any] | None = None,
        api_qps: int | None = None,
        pods_per_node: int = 110,
    ):
        self.workdir = Path(workdir).resolve()
        # The requests per second the controller manager and the scheduler may send (their
        # default is 20 and 50): a benchmark of thousands of pods raises it so that it measures
        # us, not the DaemonSet controller's client throttling.
        self.api_qps = api_qps
        # A simulated node's pod capacity (the kubelet's default, 110): a benchmark of more
        # DaemonSets than that raises it, or the extra pods would stay unschedulable.
        self.pods_per_node = pods_per_node
        self.nodes = nodes
        self.node_prefix = node_prefix
        self.real_nodes = real_nodes
        self.kubelet_config = kubelet_config
        self.kubeconfig = self.workdir / "kubeconfig"
        # One CA for the cluster (pki.py): the API server's serving certificate, its client
        # certificate towards kubelets, and each real kubelet's serving certificate.
        self.ca = ClusterCA(self.workdir / "pki")
        self.ca_file = self.ca.cert
        # Real nodes' pods reach the API server at the `kubernetes` Service's address (the
        # first of this range), put on the machine by this cluster; a range of its own, so
        # that two clusters with real nodes on one machine do not claim the same address.
        self._net = secrets.randbelow(64)
        self.service_ip = f"10.{128 + self._net}.0.1"
        self.registry: Registry | None = None
        self.real: list[RealNode] = []
        self.host_changes = HostChanges(self.workdir)
        self.logs_dir = self.workdir / "logs"
        self.audit_log = self.logs_dir / "audit.log"
        self.server = ""
        self.token = ""
        self.start_seconds: float | None = None  # start() until all nodes are Ready
        self._procs: dict[str, Process] = {}
        self._ssl: ssl.SSLContext | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> None:
        """Start every component and ``nodes`` nodes; return when all nodes are Ready.

        On failure everything already started is stopped again and the error (with the tail of
        the failing component's log) is raised.
        """
        began = time.monotonic()
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def _start(self, timeout: float) -> None:
        bins = find_binaries()
        self.workdir.mkdir(parents=True, exist_ok=True)
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        etcd_client, etcd_peer, api_port, kcm_port, sched_port = free_ports(5)
        self.server = f"https://127.0.0.1:{api_port}"

        # Service-account signing key: the API server signs tokens with it (TokenRequest), the
        # controller-manager's token controller needs it too.
        sa_key = pki / "sa.key"
        if not sa_key.exists():
            subprocess.run(
                ["openssl", "genrsa", "-out", str(sa_key), "2048"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        # Static tokens: the admin (also used by the other components) is in system:masters;
        # each real kubelet is system:node:<name> in system:nodes, for the Node authorizer.
        self.token = secrets.token_hex(24)
        self._node_tokens = {f"real-{i}": secrets.token_hex(24) for i in range(self.real_nodes)}
        tokens = pki / "tokens.csv"
        tokens.write_text(
            f'{self.token},admin,admin,"system:masters"\n'
            + "".join(
                f'{token},system:node:{name},node-{name},"system:nodes"\n'
                for name, token in self._node_tokens.items()
            )
        )
        tokens.chmod(0o600)
        self.ca.ensure()
        serving_cert, serving_key = self.ca.issue(
            "apiserver",
            "kube-apiserver",
            ips=("127.0.0.1", self.service_ip),
            dns=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            server=True,
        )
        kubelet_client_cert, kubelet_client_key = self.ca.issue(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            "system:masters",
            client=True,
        )

        audit_policy = self.workdir / "audit-policy.yaml"
        audit_policy.write_text(yaml.safe_dump(AUDIT_POLICY, sort_keys=False))

        etcd_url = f"http://127.0.0.1:{etcd_client}"
        self._procs["etcd"] = Process(
            "etcd",
            [
                str(bins["etcd"]),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
                # Throw-away data: skipping fsync makes writes (and so the whole cluster)
                # much faster.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            self.logs_dir / "etcd.log",
        )

        self._procs["kube-apiserver"] = Process(
            "kube-apiserver",
            [
                str(bins["kube-apiserver"]),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                # Needed where there is no default route; also what goes into the kubernetes
                # Service.
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={serving_cert}",
                f"--tls-private-key-file={serving_key}",
                f"--client-ca-file={self.ca_file}",
                # `kubectl logs` of a pod on a real node: the API server calls its kubelet.
                f"--kubelet-client-certificate={kubelet_client_cert}",
                f"--kubelet-client-key={kubelet_client_key}",
                f"--kubelet-certificate-authority={self.ca_file}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--token-auth-file={tokens}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                f"--service-cluster-ip-range=10.{128 + self._net}.0.0/16",
                # New Nodes would get node.kubernetes.io/not-ready:NoSchedule from this plugin,
                # which DaemonSet pods do not tolerate. (Pod Security admission stays on: it is
                # default.)
                "--disable-admission-plugins=TaintNodesByCondition",
                # On as on OpenShift: setting blockOwnerDeletion in an owner reference then needs
                # `update` on the owner's finalizers, so a Role that lacks it fails here too.
                "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
                # The endpoint reconciler would try to publish 127.0.0.1 as the kubernetes Service's
                # endpoint, which validation rejects (loopback), and log that forever.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                # Writes made as a ServiceAccount (none but a test's own), each logged when
                # answered, by the request's own handler ("blocking"), not in delayed batches.
                f"--audit-policy-file={audit_policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--audit-log-maxsize=100",
                "--audit-log-maxbackup=1",
            ],
            self.logs_dir / "kube-apiserver.log",
        )

        kcm_kubeconfig = self.workdir / "kube-controller-manager.kubeconfig"
        sched_kubeconfig = self.workdir / "kube-scheduler.kubeconfig"
        self._procs["kube-controller-manager"] = Process(
            "kube-controller-manager",
            [
                str(bins["kube-controller-manager"]),
                f"--kubeconfig={kcm_kubeconfig}",
                f"--authentication-kubeconfig={kcm_kubeconfig}",
                f"--authorization-kubeconfig={kcm_kubeconfig}",
                "--leader-elect=false",
                # All default controllers (daemonset, garbagecollector, namespace, serviceaccount,
                # serviceaccount-token, nodelifecycle, ...). nodelifecycle works with kwok's leases.
                "--controllers=*",
                f"--service-account-private-key-file={sa_key}",
                f"--root-ca-file={self.ca_file}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--cert-dir={pki / 'kube-controller-manager'}",
                *self._qps_flags(),
            ],
            self.logs_dir / "kube-controller-manager.log",
        )

        self._procs["kube-scheduler"] = Process(
            "kube-scheduler",
            [
                str(bins["kube-scheduler"]),
                f"--kubeconfig={sched_kubeconfig}",
                f"--authentication-kubeconfig={sched_kubeconfig}",
                f"--authorization-kubeconfig={sched_kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                f"--cert-dir={pki / 'kube-scheduler'}",
                *self._qps_flags(),
            ],
            self.logs_dir / "kube-scheduler.log",
        )

        self._procs["kwok"] = Process(
            "kwok",
            [
                str(bins["kwok"]),
                f"--kubeconfig={self.kubeconfig}",
                # Our config only: without -c kwok would also read ~/.kwok/kwok.yaml.
                f"--config={STAGES_FILE}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=" + "=".join(FAKE_NODE_ANNOTATION),
                # Pod IPs come from here; the default /24 runs out with 50 nodes.
                "--cidr=10.64.0.1/14",
                "--node-ip=127.0.0.1",
                # Required: the kwok binary's default is 0, which means "no node Leases". Without
                # Leases the node-lifecycle controller marks every node NotReady after ~50s and
                # flips all pods to Ready=False (kwok's pod-ready stage never re-readies them).
                "--node-lease-duration-seconds=40",
            ],
            self.logs_dir / "kwok.log",
        )

        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(deadline - time.monotonic(), 1.0)

        self._launch("etcd", lambda: self._http_ok(f"{etcd_url}/health"), left())
        self._launch("kube-apiserver", self._apiserver_ready, left())
        self._write_kubeconfigs(kcm_kubeconfig, sched_kubeconfig)
        # Started together: neither needs the other, and they share the 2 cores' start-up time.
        self._procs["kube-controller-manager"].start()
        self._procs["kube-scheduler"].start()
        self._wait_ready(
            "kube-controller-manager",
            lambda: self._http_ok(f"https://127.0.0.1:{kcm_port}/healthz", verify=False),
            left(),
        )
        self._wait_ready(
            "kube-scheduler",
            lambda: self._http_ok(f"https://127.0.0.1:{sched_port}/healthz", verify=False),
            left(),
        )
        # kwok serves nothing we could probe; it is ready when it has made our nodes Ready.
        self._procs["kwok"].start()
        for i in range(self.nodes):
            self.add_node(f"{self.node_prefix}{i}")
        if self.nodes:
            self.wait_nodes_ready(self.nodes, left())
        self._procs["kwok"].ready_seconds = time.monotonic() - (self._procs["kwok"].started_at or 0)
        if self.real_nodes:
            self._start_real_nodes(left)
        # Pods can only be created once the namespace's "default" ServiceAccount exists.
        wait_for(
            lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default"),
            left(),
            "the default ServiceAccount",
            on_timeout=self._log_tails,
        )

    def stop(self) -> None:
        """Stop every process (reverse start order) by its pid, and put back what real nodes
        changed on the machine (host.py). Data stays in workdir."""
        problems: list[str] = []
        try:
            for real in reversed(self.real):
                real.stop()
        finally:
            # Also after a start that failed before any node existed: the socket directory,
            # a bridge or the Service address may already be there.
            if self.host_changes.path.exists():
                problems = self.host_changes.restore()
            for name in reversed(list(self._procs)):
                self._procs[name].stop()
        if problems:
            raise RuntimeError("could not put the machine back: " + "; ".join(problems))

    def cleanup(self) -> None:
        """stop() and remove the whole workdir."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------ real nodes

    def _start_real_nodes(self, left: Any) -> None:
        stack = find_node_stack()
        (registry_port,) = free_ports(1)
        self.registry = Registry(stack["registry"], self.workdir / "registry", registry_port)
        self.registry.write_config()
        self._procs["registry"] = self.registry.process
        self._launch("registry", self.registry.ready, left())
        pause_image = f"{self.registry.host}/pause:3.10"
        push_image(
            stack["crane"],
            pause_image,
            [tar_layer({"pause": stack["pause"]})],
            entrypoint=["/pause"],
            user="65535:65535",
        )
        address = node_ip()
        sockets = short_socket_dir()
        self.host_changes.note("directories", str(sockets))
        self.host_changes.note("scratch", str(sockets))  # removed once all is put back
        tag = f"{secrets.token_hex(2)}"
        for i, name in enumerate(self._node_tokens):
            subnet = f"10.{192 + self._net}.{i}"
            network = {
                "address": address,
                "bridge": f"kip{tag}-{i}",
                "subnet": f"{subnet}.0/24",
                "gateway": f"{subnet}.1",
                "cni_name": f"kip-{tag}-{name}",
                "cgroup_root": f"/kip-{tag}-{name}",
            }
            self.host_changes.note("links", network["bridge"])
            self._create_bridge(network["bridge"])
            node = RealNode(
                name, i, stack, self.workdir / "real" / name, sockets / str(i), network,
                self.ca, self.server, self._node_tokens[name], self.registry.host,
                pause_image, self.host_changes, self.kubelet_config,
            )  # fmt: skip
            self.real.append(node)
            for process in node.processes:
                self._procs[process.name] = process
        # Pods reach the API server at the Service's address: on the loopback device, so it is
        # this machine's whatever the bridge (the bridge plugin wants its gateway address alone).
        self.host_changes.note("addresses", f"{self.service_ip}/32 dev lo")
        _run(["ip", "addr", "add", f"{self.service_ip}/32", "dev", "lo"])
        api_port = self.server.rsplit(":", 1)[1]
        self._procs["apiserver-forward"] = Process(
            "apiserver-forward",
            [sys.executable, "-m", "localcluster.forward", f"{self.service_ip}:443",
             f"127.0.0.1:{api_port}"],
            self.logs_dir / "apiserver-forward.log",
        )  # fmt: skip
        self._launch(
            "apiserver-forward",
            lambda: _connects(self.service_ip, 443),
            left(),
        )
        for node in self.real:
            node.start(left())
        wait_for(
            self._real_nodes_ready,
            left(),
            f"{self.real_nodes} real nodes to be Ready",
            on_timeout=lambda: "\n".join(
                tail(p.log_path, 20) for n in self.real for p in n.processes
            ),
        )

    def _create_bridge(self, name: str) -> None:
        # The CNI bridge plugin would create it at the first pod; made here, so it is ours (and
        # recorded) before any pod exists.
        for command in (
            ["ip", "link", "add", name, "type", "bridge"],
            ["ip", "link", "set", name, "up"],
        ):
            _run(command)

    def _real_nodes_ready(self) -> bool:
        for node in self.real:
            node.check()  # a kubelet or containerd that exited fails at once, with its log
        ready = set(self.ready_nodes())
        return all(node.name in ready for node in self.real)

    def real_node(self, name: str) -> RealNode:
        return next(node for node in self.real if node.name == name)

    # ------------------------------------------------------------------ API server restarts

    def stop_apiserver(self) -> None:
        self._procs["kube-apiserver"].stop()

    def start_apiserver(self, timeout: float = 60.0) -> None:
        """Start kube-apiserver again: same flags, same port, same etcd data, same cert."""
        self._launch("kube-apiserver", self._apiserver_ready, timeout)

    def restart_apiserver(self, timeout: float = 60.0) -> None:
        self.stop_apiserver()
        self.start_apiserver(timeout)

    def _qps_flags(self) -> list[str]:
        if self.api_qps is None:
            return []
        return [f"--kube-api-qps={self.api_qps}", f"--kube-api-burst={2 * self.api_qps}"]

    # ------------------------------------------------------------------ nodes

    def add_node(
        self,
        name: str,
        labels: dict[str, str] | None = None,
        taints: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        """Create a kwok-managed Node. ``taints`` are dicts like {"key","value","effect"}.

        Status (capacity/allocatable) is set on create, which the API allows for Nodes; kwok's
        node-initialize stage keeps it and adds the Ready condition.
        """
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {FAKE_NODE_ANNOTATION[0]: FAKE_NODE_ANNOTATION[1]},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                    **(labels or {}),
                },
            },
            "spec": {"taints": list(taints or [])},
            "status": {
                "capacity": {**NODE_RESOURCES, "pods": str(self.pods_per_node)},
                "allocatable": {**NODE_RESOURCES, "pods": str(self.pods_per_node)},
            },
        }
        created: dict[str, Any] = self._request("POST", "/api/v1/nodes", node)
        return created

    def delete_node(self, name: str) -> None:
        try:
            self._request("DELETE", f"/api/v1/nodes/{name}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise

    def ready_nodes(self) -> list[str]:
        nodes = self._get("/api/v1/nodes")["items"]
        return [
            n["metadata"]["name"]
            for n in nodes
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        ]

    def wait_nodes_ready(self, count: int, timeout: float = 60.0) -> list[str]:
        """Wait until at least ``count`` nodes are Ready; returns their names."""
        return wait_for(
            lambda: (lambda ready: ready if len(ready) >= count else None)(self.ready_nodes()),
            timeout,
            f"{count} Ready nodes",
            on_timeout=self._log_tails,
        )

    # ------------------------------------------------------------------ introspection

    @property
    def processes(self) -> dict[str, dict[str, Any]]:
        """Per component: pid, rss_mib, ready_seconds (spawn until ready), log path."""
        out = {}
        for name, proc in self._procs.items():
            pid = proc.pid if proc.running() else None
            out[name] = {
                "pid": pid,
                "rss_mib": rss_mib(pid) if pid else None,
                "ready_seconds": proc.ready_seconds,
                "log": str(proc.log_path),
                "argv": proc.argv,
            }
        return out

    # ------------------------------------------------------------------ internals

    def _launch(self, name: str, ready: Any, timeout: float) -> None:
        self._procs[name].start()
        self._wait_ready(name, ready, timeout)

    def _wait_ready(self, name: str, ready: Any, timeout: float) -> None:
        proc = self._procs[name]

        def check() -> bool:
            proc.check_running()  # a crashed process fails at once, with its log
            return bool(ready())

        wait_for(check, timeout, f"{name} to become ready", on_timeout=lambda: tail(proc.log_path))
        proc.ready_seconds = time.monotonic() - (proc.started_at or 0)

    def _log_tails(self) -> str:
        return "\n".join(tail(p.log_path, 15) for p in self._procs.values())

    def _apiserver_ready(self) -> bool:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=str(self.ca_file))
        return self._http_ok(f"{self.server}/readyz", context=self._ssl)

    def _http_ok(
        self, url: str, verify: bool = True, context: ssl.SSLContext | None = None
    ) -> bool:
        if not verify:
            # Only for /healthz of kube-controller-manager and kube-scheduler, whose throw-away
            # self-signed serving certs we never trust for anything else.
            context = ssl._create_unverified_context()  # noqa: S323
        req = urllib.request.Request(url)
        if self.token and url.startswith(self.server or "\0"):
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=5, context=context) as resp:
                return bool(resp.status == 200)
        except urllib.error.HTTPError as exc:
            exc.close()  # an HTTPError holds the open response; unclosed it warns later
            return False

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(req, timeout=15, context=self._ssl) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            # Keep the API's explanation (it is in the body), and close the response.
            detail = exc.read().decode(errors="replace")
            exc.close()
            raise urllib.error.HTTPError(
                exc.url, exc.code, f"{exc.reason}: {detail}", exc.headers, None
            ) from None

    def _get(self, path: str) -> Any:
        return self._request("GET", path)

    def _write_kubeconfigs(self, *component_kubeconfigs: Path) -> None:
        # The CA is embedded as data, so the file still works when copied elsewhere.
        ca_data = base64.b64encode(self.ca_file.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": self.server, "certificate-authority-data": ca_data},
                }
            ],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
            "current-context": "local",
        }
        text = yaml.safe_dump(config, sort_keys=False)
        # kube-controller-manager, kube-scheduler and kwok use the admin identity too: simplest,
        # and the point of this cluster is the API's behaviour towards our controller.
        for path in (self.kubeconfig, *component_kubeconfigs):
            path.write_text(text)
            path.chmod(0o600)
