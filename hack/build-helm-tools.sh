#!/usr/bin/env bash
# Build the real tools the chart and the monitoring pack are checked with, from the Go module
# proxy, into a cache outside the checkout (next to the control plane's):
#   helm      helm.sh/helm/v4/cmd/helm at HELM_VERSION
#   promtool  github.com/prometheus/prometheus/cmd/promtool at PROMETHEUS_VERSION
# A build is skipped when its binary is already in the cache (the directory is keyed by both
# pinned versions in hack/versions.sh).
#
# Usage: hack/build-helm-tools.sh
# Prints the cache directory on the last line of stdout.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/lib.sh
source "${HERE}/lib.sh"

BIN_DIR="${CACHE_ROOT}/helm-tools/helm-${HELM_VERSION}_prometheus-${PROMETHEUS_VERSION}"

export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS=-mod=mod
mkdir -p "${BIN_DIR}" "${WORK_DIR}"

log() { echo "build-helm-tools: $*" >&2; }

take_lock helm-tools

start=$(date +%s)
CGO_ENABLED=0 go_install helm "helm.sh/helm/v4/cmd/helm@${HELM_VERSION}" \
  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}"
CGO_ENABLED=0 go_install promtool "github.com/prometheus/prometheus/cmd/promtool@${PROMETHEUS_VERSION}" \
  -ldflags "-s -w"
log "done in $(( $(date +%s) - start ))s: ${BIN_DIR}"
echo "${BIN_DIR}"
