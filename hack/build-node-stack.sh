#!/usr/bin/env bash
# Build what a real node needs beside the control plane, from the Go module proxy and Debian's
# packages, into a cache outside the checkout (next to the control plane's):
#   containerd, ctr, containerd-shim-runc-v2, runc (with seccomp), the CNI plugins bridge,
#   host-local, loopback and portmap, crictl, registry, crane, and two images' raw parts: the
#   pause binary (static, from the Kubernetes module's build/pause) and busybox (static, from
#   Debian's busybox-static, unpacked, not installed).
# The kubelet is built with the other Kubernetes binaries (hack/build-control-plane.sh kubelet),
# as the same module at the same version; this script calls it for that.
#
# A build is skipped when its binary is already in the cache (the directory is keyed by every
# pinned version in hack/versions.sh). libseccomp-dev (runc's seccomp support needs it) is
# installed with apt-get when missing.
#
# Usage: hack/build-node-stack.sh
# Prints the cache directory on the last line of stdout.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/lib.sh
source "${HERE}/lib.sh"

BIN_DIR="${CACHE_ROOT}/node-stack/containerd-${CONTAINERD_VERSION}_runc-${RUNC_VERSION}_cni-${CNI_PLUGINS_VERSION}_crictl-${CRICTL_VERSION}_registry-${REGISTRY_VERSION}_crane-${CRANE_VERSION}_k8s-${KUBERNETES_VERSION}"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
mkdir -p "${BIN_DIR}" "${WORK_DIR}"

log() { echo "build-node-stack: $*" >&2; }

# The kubelet first: that script takes the build lock itself, so it must run before we do.
bash "${HERE}/build-control-plane.sh" kubelet >/dev/null

take_lock node-stack

apt_missing() {  # apt_missing PACKAGE: true when the Debian package is not installed
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" != "install ok installed" ]
}

start=$(date +%s)

if apt_missing libseccomp-dev; then
  log "installing libseccomp-dev (runc's seccomp support links against it)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q libseccomp-dev >&2 \
    || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libseccomp-dev >&2; }
fi

CGO_ENABLED=0 go_install containerd "github.com/containerd/containerd/v2/cmd/containerd@${CONTAINERD_VERSION}" -tags no_btrfs -ldflags "-s -w"
CGO_ENABLED=0 go_install ctr "github.com/containerd/containerd/v2/cmd/ctr@${CONTAINERD_VERSION}" -tags no_btrfs -ldflags "-s -w"
CGO_ENABLED=0 go_install containerd-shim-runc-v2 "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@${CONTAINERD_VERSION}" -tags no_grpc -ldflags "-s -w"
# Pods run with seccomp RuntimeDefault: a runc without the seccomp tag cannot start them.
CGO_ENABLED=1 go_install runc "github.com/opencontainers/runc@${RUNC_VERSION}" -tags seccomp -ldflags "-s -w"
mkdir -p "${BIN_DIR}/cni"
for plugin in main/bridge ipam/host-local main/loopback meta/portmap; do
  name="$(basename "${plugin}")"
  [ -x "${BIN_DIR}/cni/${name}" ] && continue
  CGO_ENABLED=0 go_install "cni/${name}" "github.com/containernetworking/plugins/plugins/${plugin}@${CNI_PLUGINS_VERSION}" -ldflags "-s -w"
done
CGO_ENABLED=0 go_install crictl "sigs.k8s.io/cri-tools/cmd/crictl@${CRICTL_VERSION}" -ldflags "-s -w"
CGO_ENABLED=0 go_install registry "github.com/distribution/distribution/v3/cmd/registry@${REGISTRY_VERSION}" -ldflags "-s -w"
CGO_ENABLED=0 go_install crane "github.com/google/go-containerregistry/cmd/crane@${CRANE_VERSION}" -ldflags "-s -w"

# The pod sandbox's pause binary: registry.k8s.io is out of reach, so it is compiled from the
# Kubernetes module's own source, static, and packed into an image when a cluster starts.
if [ ! -x "${BIN_DIR}/pause" ]; then
  log "building pause (k8s.io/kubernetes ${KUBERNETES_VERSION} build/pause)"
  src="$(cd "${WORK_DIR}" && go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" \
    | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  gcc -Os -static -DVERSION="${KUBERNETES_VERSION}" -o "${BIN_DIR}/pause.tmp" \
    "${src}/build/pause/linux/pause.c"
  strip "${BIN_DIR}/pause.tmp" && mv "${BIN_DIR}/pause.tmp" "${BIN_DIR}/pause"
fi

# A static busybox for images that need /bin/sh and cp (the puller's copy-sleep init container).
if [ ! -x "${BIN_DIR}/busybox" ]; then
  log "unpacking busybox-static from Debian's packages"
  tmp="$(mktemp -d)"
  (cd "${tmp}" && apt-get download -q busybox-static >&2 \
    || { apt-get update -q >&2 && apt-get download -q busybox-static >&2; })
  dpkg-deb -x "${tmp}"/busybox-static_*.deb "${tmp}/root"
  install -m 0755 "${tmp}/root/bin/busybox" "${BIN_DIR}/busybox"
  rm -rf "${tmp}"
fi

log "done in $(( $(date +%s) - start ))s: ${BIN_DIR}"
echo "${BIN_DIR}"
