"""Find the five control-plane binaries, building the missing ones once.

Lookup order for each binary (first hit wins):

1. the directory named by ``KUBEBUILDER_ASSETS`` (the convention of controller-runtime's envtest,
   so a developer who already has envtest assets can reuse them),
2. ``PATH``,
3. the build cache of ``hack/build-control-plane.sh``
   (``~/.cache/imagepuller/control-plane/k8s-<v>_etcd-<v>_kwok-<v>/``).

If something is still missing, ``hack/build-control-plane.sh <missing names>`` is run (it builds
from the Go module proxy; tens of minutes on a cold cache) and the cache is looked at again.

``kubectl`` is found the same way except that ``PATH`` is never used: whatever kubectl the
machine has may be far from the API server's version, beyond kubectl's supported skew of one
minor version, so the tests use one built at the control plane's own version.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-control-plane.sh"
VERSIONS_FILE = REPO_ROOT / "hack" / "versions.sh"
NODE_STACK_SCRIPT = REPO_ROOT / "hack" / "build-node-stack.sh"

# What a real node needs beside the control plane (hack/build-node-stack.sh); the kubelet is
# built with the control plane's Kubernetes binaries.
NODE_STACK = (
    "containerd", "containerd-shim-runc-v2", "runc", "crictl", "registry", "crane", "pause",
    "busybox", "cni/bridge", "cni/host-local", "cni/loopback",
)  # fmt: skip


class MissingBinariesError(RuntimeError):
    """Raised when binaries are neither found nor buildable."""


def pinned_versions() -> dict[str, str]:
    # versions.sh is the single source of truth for pinned versions; it is plain KEY=VALUE lines.
    out: dict[str, str] = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip().strip("\"'")
    return out


def cache_dir() -> Path:
    """The directory hack/build-control-plane.sh builds into (same rules as the script)."""
    v = pinned_versions()
    root = os.environ.get("IMAGEPULLER_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imagepuller"
    )
    name = f"k8s-{v['KUBERNETES_VERSION']}_etcd-{v['ETCD_VERSION']}_kwok-{v['KWOK_VERSION']}"
    return Path(root) / "control-plane" / name


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _lookup(name: str) -> Path | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and _is_executable(Path(assets) / name):
        return Path(assets) / name
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    cached = cache_dir() / name
    return cached if _is_executable(cached) else None


def _run_build_script(missing: list[str]) -> None:
    if not BUILD_SCRIPT.is_file():
        raise MissingBinariesError(
            f"missing control-plane binaries {missing} and no build script at {BUILD_SCRIPT}"
        )
    # The script's stderr (go's progress) goes straight to ours so a long build is visible.
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), *missing], stdout=subprocess.PIPE, text=True
    )
    if result.returncode != 0:
        raise MissingBinariesError(
            f"missing control-plane binaries {missing}; "
            f"`bash {BUILD_SCRIPT} {' '.join(missing)}` failed with exit code "
            f"{result.returncode} (see its output above)"
        )


def _lookup_kubectl() -> Path | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    for directory in ([Path(assets)] if assets else []) + [cache_dir()]:
        if _is_executable(directory / "kubectl"):
            return directory / "kubectl"
    return None


def find_kubectl(build: bool = True) -> Path:
    """kubectl at the control plane's version (never the machine's), built when missing."""
    found = _lookup_kubectl()
    if found is None and build:
        _run_build_script(["kubectl"])
        found = _lookup_kubectl()
    if found is None:
        raise MissingBinariesError(
            f"no kubectl at the control plane's version in $KUBEBUILDER_ASSETS or {cache_dir()}; "
            f"build it with `bash {BUILD_SCRIPT} kubectl`"
        )
    return found


def find_binaries(build: bool = True) -> dict[str, Path]:
    """Return ``{component: path}`` for all five components.

    With ``build=True`` missing components are built with hack/build-control-plane.sh first.
    Raises MissingBinariesError naming every component that could not be found.
    """
    found = {name: _lookup(name) for name in COMPONENTS}
    missing = [name for name, path in found.items() if path is None]
    if missing and build:
        _run_build_script(missing)
        found = {name: _lookup(name) for name in COMPONENTS}
        missing = [name for name, path in found.items() if path is None]
    if missing:
        raise MissingBinariesError(
            f"missing control-plane binaries {missing}: looked in $KUBEBUILDER_ASSETS, $PATH and "
            f"{cache_dir()}; build them with `bash {BUILD_SCRIPT} {' '.join(missing)}`"
        )
    return {name: path for name, path in found.items() if path is not None}


def node_stack_dir() -> Path:
    """The directory hack/build-node-stack.sh builds into (same rules as the script)."""
    v = pinned_versions()
    name = (
        f"containerd-{v['CONTAINERD_VERSION']}_runc-{v['RUNC_VERSION']}"
        f"_cni-{v['CNI_PLUGINS_VERSION']}_crictl-{v['CRICTL_VERSION']}"
        f"_registry-{v['REGISTRY_VERSION']}_crane-{v['CRANE_VERSION']}"
        f"_k8s-{v['KUBERNETES_VERSION']}"
    )
    return cache_dir().parent.parent / "node-stack" / name


def node_stack_missing() -> list[str]:
    found = [name for name in NODE_STACK if _is_executable(node_stack_dir() / name)]
    missing = [name for name in NODE_STACK if name not in found]
    if not _is_executable(cache_dir() / "kubelet"):
        missing.append("kubelet")
    return missing


def find_node_stack(build: bool = True) -> dict[str, Path]:
    """``{name: path}`` of the real node's binaries, built once with hack/build-node-stack.sh."""
    _built_by(NODE_STACK_SCRIPT, node_stack_missing, "node binaries", node_stack_dir(), build)
    paths = {name: node_stack_dir() / name for name in NODE_STACK}
    paths["kubelet"] = cache_dir() / "kubelet"
    return paths


# --- helm and promtool: the chart's and the monitoring pack's tools -------------------------

HELM_TOOLS_SCRIPT = REPO_ROOT / "hack" / "build-helm-tools.sh"
HELM_TOOLS = ("helm", "promtool")


def helm_tools_dir() -> Path:
    """The directory hack/build-helm-tools.sh builds into (same rules as the script)."""
    v = pinned_versions()
    name = f"helm-{v['HELM_VERSION']}_prometheus-{v['PROMETHEUS_VERSION']}"
    return cache_dir().parent.parent / "helm-tools" / name


def find_helm_tools(build: bool = True) -> dict[str, Path]:
    """``{name: path}`` of helm and promtool, built once with hack/build-helm-tools.sh."""

    def missing() -> list[str]:
        return [name for name in HELM_TOOLS if not _is_executable(helm_tools_dir() / name)]

    _built_by(HELM_TOOLS_SCRIPT, missing, "tools", helm_tools_dir(), build)
    return {name: helm_tools_dir() / name for name in HELM_TOOLS}


def _built_by(
    script: Path, missing: Callable[[], list[str]], what: str, where: Path, build: bool
) -> None:
    """Return once nothing is ``missing``, after running ``script`` once if ``build``; raise
    MissingBinariesError naming what is still missing otherwise."""
    if missing() and build:
        result = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE)
        if result.returncode != 0:
            raise MissingBinariesError(
                f"missing {what} {missing()}; `bash {script}` failed with exit code "
                f"{result.returncode} (see its output above)"
            )
    if missing():
        raise MissingBinariesError(
            f"missing {what} {missing()} in {where}; build them with `bash {script}`"
        )
