#!/usr/bin/env bash
# Build the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok) and the kubectl the tests use, at the same Kubernetes version, from
# the Go module proxy into a cache outside the checkout.
#
# There is no container engine and no download site on our machines, only package
# registries, so every binary is compiled from its Go module. A build is skipped when
# the binary is already in the cache (the cache directory is keyed by version).
#
# Usage: hack/build-control-plane.sh [component...]
#   components: etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kubelet
#   (default: all but kubelet, which only real nodes need: hack/build-node-stack.sh asks for
#   it). kubectl is built here rather than taken from the machine: a kubectl more than one
#   minor away from the API server is outside Kubernetes' supported version skew.
# Prints the cache directory on the last line of stdout.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/lib.sh
source "${HERE}/lib.sh"

BIN_DIR="${CACHE_ROOT}/control-plane/k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
mkdir -p "${BIN_DIR}" "${WORK_DIR}"

log() { echo "build-control-plane: $*" >&2; }

take_lock build

wanted=("$@")
if [ ${#wanted[@]} -eq 0 ]; then
  wanted=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)
fi
missing() {  # missing NAME: true when NAME is wanted and not built yet
  local name
  for name in "${wanted[@]}"; do
    [ "${name}" = "$1" ] && [ ! -x "${BIN_DIR}/$1" ] && return 0
  done
  return 1
}

# A fresh wrapper module per component family: their dependency versions conflict.
new_module() {
  local dir="${WORK_DIR}/$1"
  rm -rf "${dir}" && mkdir -p "${dir}"
  (cd "${dir}" && go mod init "imagepuller.local/build/$1" >/dev/null 2>&1)
  echo "${dir}"
}

build_kubernetes() {
  local k8s=()
  for name in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet; do
    missing "${name}" && k8s+=("${name}")
  done
  [ ${#k8s[@]} -eq 0 ] && return 0
  log "building ${k8s[*]} ${KUBERNETES_VERSION}"
  local dir; dir="$(new_module kubernetes)"
  cd "${dir}"
  # k8s.io/kubernetes replaces its staging modules with ./staging/...; a module that
  # requires it must replace each one with the published v0.X.Y release instead.
  local upstream_mod staging_version="v0${KUBERNETES_VERSION#v1}"
  upstream_mod="$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" \
    | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  grep -E '^\s*k8s.io/[^ ]+ => \./staging/' "${upstream_mod}" | awk '{print $1}' \
    | while read -r mod; do
        go mod edit -replace "${mod}=${mod}@${staging_version}"
      done
  go mod edit -require "k8s.io/kubernetes@${KUBERNETES_VERSION}"
  local pkgs=()
  for name in "${k8s[@]}"; do
    pkgs+=("k8s.io/kubernetes/cmd/${name}")
    go mod edit -tool "k8s.io/kubernetes/cmd/${name}"
  done
  go mod tidy >&2
  local minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${pkg}.gitVersion=${KUBERNETES_VERSION} -X ${pkg}.gitMajor=1"
    ldflags+=" -X ${pkg}.gitMinor=${minor} -X ${pkg}.gitTreeState=clean"
  done
  go build -trimpath -ldflags "${ldflags}" -o "${BIN_DIR}/" "${pkgs[@]}"
}

build_etcd() {
  missing etcd || return 0
  log "building etcd ${ETCD_VERSION}"
  local dir; dir="$(new_module etcd)"
  cd "${dir}"
  go mod edit -require "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" -tool go.etcd.io/etcd/server/v3
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w" -o "${BIN_DIR}/etcd" go.etcd.io/etcd/server/v3
}

build_kwok() {
  missing kwok || return 0
  log "building kwok ${KWOK_VERSION}"
  local dir; dir="$(new_module kwok)"
  cd "${dir}"
  go mod edit -require "sigs.k8s.io/kwok@${KWOK_VERSION}" -tool sigs.k8s.io/kwok/cmd/kwok
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w" -o "${BIN_DIR}/kwok" sigs.k8s.io/kwok/cmd/kwok
}

start=$(date +%s)
build_etcd
build_kwok
build_kubernetes
log "done in $(( $(date +%s) - start ))s: ${BIN_DIR}"
echo "${BIN_DIR}"
