"""A real node: a kubelet and containerd (runc, CNI bridge) joined to the local control plane.

kwok simulates the pod lifecycle; a real node pulls images, runs containers under runc with the
pod's security context, and holds what it pulled in containerd's content store, so a test can
read the truth from the runtime (``crictl``). What this machine needs and its traps are in
``shared/reference/real-node.md``; the settings below each answer one of them:

- cgroup v1 only: ``failCgroupV1: false`` and the cgroupfs driver, under a cgroup root of this
  node's own, created beforehand in every hierarchy (two nodes never share one);
- no CAP_SYS_RESOURCE: containerd's ``restrict_oom_score_adj``;
- no pause image to download: one is built from the Kubernetes source's pause.c and pinned;
- the node's identity is ``system:node:<name>`` (a token in the API server's token file), so the
  Node authorizer applies to it; it serves on the machine's address with a certificate of the
  cluster CA, and the API server calls it with a client certificate of the same CA, so
  ``kubectl logs`` works;
- containerd's root, state, sockets, shim sockets, runc's root, network namespaces, CNI state
  and the kubelet's root and pod logs all live under the node's directory; what cannot
  (sysctls, mounts, cgroups, the bridge) is recorded in host.py before it changes and put back
  by ``stop()``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from .host import HostChanges, create_cgroup_root
from .pki import ClusterCA
from .process import Process, free_ports, tail, wait_for


def node_ip() -> str:
    """The machine's own address (the kubelet refuses a loopback one): the source address of
    a route out, or the first non-loopback address of the host name."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.255", 9))  # no packet is sent: connect() on UDP only picks a route
        address = s.getsockname()[0]
        if not address.startswith("127."):
            return str(address)
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    for address in out:
        if "." in address and not address.startswith("127."):
            return address
    raise RuntimeError("a real node needs a non-loopback IPv4 address on this machine")


class RealNode:
    """One kubelet + containerd pair. ``start()`` returns once the Node is registered."""

    def __init__(
        self,
        name: str,
        index: int,
        stack: dict[str, Path],
        directory: Path,
        socket_dir: Path,
        network: dict[str, str],
        ca: ClusterCA,
        server: str,
        token: str,
        registry_host: str,
        pause_image: str,
        host: HostChanges,
        kubelet_config: dict[str, Any] | None = None,
    ):
        self.name = name
        self.stack = stack
        self.directory = Path(directory)
        self.sockets = Path(socket_dir)  # short: unix socket paths are limited to 108 bytes
        self.network = network  # bridge, subnet, gateway, cni_name, cgroup_root, address
        self.ca = ca
        self.server = server
        self.token = token
        self.registry_host = registry_host
        self.pause_image = pause_image
        self.host = host
        self.kubelet_config = kubelet_config or {}
        self.address = network["address"]
        (self.kubelet_port,) = free_ports(1, self.address)
        (self.healthz_port,) = free_ports(1, "127.0.0.1")  # where the kubelet serves it
        self.runtime_endpoint = f"unix://{self.sockets / 'containerd.sock'}"
        self.logs = self.directory / "logs"
        self.containerd = Process(
            f"containerd-{name}",
            [str(stack["containerd"]), "--config", str(self.directory / "containerd.toml")],
            self.logs / "containerd.log",
            # The shim and runc are found on PATH; ours come first.
            env={"PATH": f"{stack['containerd'].parent}:/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        self.kubelet = Process(
            f"kubelet-{name}",
            [
                str(stack["kubelet"]),
                f"--config={self.directory / 'kubelet.yaml'}",
                f"--kubeconfig={self.directory / 'kubelet.kubeconfig'}",
                f"--hostname-override={name}",
                f"--node-ip={self.address}",
                # Its root holds unix sockets (pod-resources, plugins): a short path too.
                f"--root-dir={self.sockets / 'kubelet'}",
                f"--cert-dir={self.directory / 'kubelet-pki'}",
                "--node-labels=type=real",
                "--v=1",
            ],
            self.logs / "kubelet.log",
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )

    @property
    def processes(self) -> list[Process]:
        return [self.containerd, self.kubelet]

    def crictl(self, *args: str, check: bool = True) -> str:
        """Run crictl against this node's containerd; returns stdout."""
        result = subprocess.run(
            [str(self.stack["crictl"]), f"--runtime-endpoint={self.runtime_endpoint}",
             f"--image-endpoint={self.runtime_endpoint}", "--timeout=30s", *args],
            capture_output=True, text=True,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise RuntimeError(f"crictl {' '.join(args)} on {self.name}: {result.stderr.strip()}")
        return result.stdout

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(parents=True, exist_ok=True)
        self.host.note("directories", str(self.directory))
        self.host.note("directories", str(self.sockets))
        self.host.note("cgroup_roots", self.network["cgroup_root"])
        self.host.note("links", self.network["bridge"])
        self.host.note("cni_networks", self.network["cni_name"])
        self.host.note_sysctls()
        self._write_containerd_config()
        self._write_kubelet_config()
        create_cgroup_root(self.network["cgroup_root"])
        deadline = time.monotonic() + timeout
        self.containerd.start()
        wait_for(
            lambda: self._checked(self.containerd) and self.crictl("version", check=False),
            max(deadline - time.monotonic(), 1),
            f"containerd of {self.name}",
            on_timeout=lambda: tail(self.containerd.log_path),
        )
        self.kubelet.start()

    def check(self) -> None:
        for process in self.processes:
            process.check_running()

    def _checked(self, process: Process) -> bool:
        process.check_running()
        return True

    def stop(self) -> None:
        """Kubelet first (else it restarts what we remove), then every pod through the runtime
        (containerd's shims outlive containerd), then containerd."""
        self.kubelet.stop()
        if self.containerd.running():
            self.crictl("rmp", "--all", "--force", check=False)
        self.containerd.stop()

    # ------------------------------------------------------------------ configuration

    def trust_http_registry(self, host: str) -> None:
        """Let containerd pull from ``host`` (``127.0.0.1:port``) over plain HTTP: the local
        registry, or a proxy in front of it. Read at each pull, so it works on a running node."""
        certs = self.directory / "certs.d" / host
        certs.mkdir(parents=True, exist_ok=True)
        (certs / "hosts.toml").write_text(
            f'server = "http://{host}"\n\n'
            f'[host."http://{host}"]\n'
            '  capabilities = ["pull", "resolve", "push"]\n'
            "  skip_verify = true\n"
        )

    def _write_containerd_config(self) -> None:
        d, stack = self.directory, self.stack
        self.trust_http_registry(self.registry_host)
        cni_conf = d / "cni" / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-bridge.conflist").write_text(json.dumps(self._cni_config(), indent=2))
        cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
        config = f"""\
version = 3
root = "{d / "containerd" / "root"}"
state = "{self.sockets / "state"}"
imports = []
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.nri.v1.nri",
  "io.containerd.image-verifier.v1.bindir",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{self.sockets / "containerd.sock"}"

[ttrpc]
  address = "{self.sockets / "containerd.sock.ttrpc"}"

[plugins.'io.containerd.shim.v1.manager']
  socket_dir = "{self.sockets / "s"}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "{self.pause_image}"

[plugins.'io.containerd.cri.v1.images'.registry]
  config_path = "{d / "certs.d"}"

[{cri_runtime}]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
  enable_criu = false

[{cri_runtime}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri_runtime}.containerd.runtimes.runc.options]
  BinaryName = "{stack["runc"]}"
  Root = "{self.sockets / "runc"}"
  SystemdCgroup = false

[{cri_runtime}.cni]
  bin_dirs = ["{stack["containerd"].parent / "cni"}"]
  conf_dir = "{cni_conf}"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
"""
        (d / "containerd.toml").write_text(config)

    def _cni_config(self) -> dict[str, Any]:
        net = self.network
        return {
            "cniVersion": "1.0.0",
            "name": net["cni_name"],
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": net["bridge"],
                    "isGateway": True,
                    "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": net["subnet"], "gateway": net["gateway"]}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.directory / "cni" / "ipam"),
                    },
                },
            ],
        }

    def _write_kubelet_config(self) -> None:
        d = self.directory
        serving_cert, serving_key = self.ca.issue(
            f"kubelet-{self.name}",
            f"system:node:{self.name}",
            "system:nodes",
            ips=(self.address,),
            dns=(self.name,),
            server=True,
        )
        config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This machine has cgroup v1 only; kubelet >= 1.35 refuses it unless told.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.network["cgroup_root"],
            "address": self.address,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.healthz_port,
            "tlsCertFile": str(serving_cert),
            "tlsPrivateKeyFile": str(serving_key),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.ca.cert)},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": self.runtime_endpoint,
            "podLogsDir": str(d / "pod-logs"),
            "podCIDR": self.network["subnet"],
            "resolvConf": "/etc/resolv.conf",
            "failSwapOn": False,
            "registerNode": True,
            # The machine's own disk and memory are not this node's to guard: no evictions.
            "evictionHard": {
                "memory.available": "1Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "maxPods": 110,
            "serializeImagePulls": True,
            "syncFrequency": "10s",
            "nodeStatusReportFrequency": "10s",
            "containerLogMaxSize": "10Mi",
            "containerLogMaxFiles": 2,
            **self.kubelet_config,
        }
        (d / "kubelet.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca.cert)},
                }
            ],
            "users": [{"name": self.name, "user": {"token": self.token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": self.name}}],
            "current-context": "local",
        }
        path = d / "kubelet.kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
        path.chmod(0o600)


def short_socket_dir() -> Path:
    """A short directory for unix sockets (the cluster's own directory may be too deep)."""
    return Path(tempfile.mkdtemp(prefix="kip-", dir="/tmp"))
