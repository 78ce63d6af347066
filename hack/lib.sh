# What the hack/build-*.sh scripts share: the pinned versions, the cache outside the checkout,
# one build at a time, and `go install` into the cache. Sourced, never run; the script defines
# log() and BIN_DIR before it calls take_lock or go_install.

# shellcheck source=hack/versions.sh
source "$(dirname "${BASH_SOURCE[0]}")/versions.sh"

CACHE_ROOT="${IMAGEPULLER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imagepuller}"
WORK_DIR="${CACHE_ROOT}/build"

# take_lock NAME: one build of NAME at a time (on fd 9); a second caller (a test fixture,
# `make run`) waits for the first instead of compiling the same thing again.
take_lock() {
  mkdir -p "${CACHE_ROOT}"
  exec 9>"${CACHE_ROOT}/$1.lock"
  if ! flock -n 9; then
    log "another build is running; waiting for it"
    flock 9
  fi
}

# go_install NAME PACKAGE@VERSION [go flags...]: build one binary into BIN_DIR as NAME, unless
# it is there already.
go_install() {
  local name="$1" pkg="$2"; shift 2
  [ -x "${BIN_DIR}/${name}" ] && return 0
  log "building ${name} (${pkg})"
  mkdir -p "${WORK_DIR}" "$(dirname "${BIN_DIR}/${name}")"
  local out
  out="$(mktemp -d "${WORK_DIR}/go-install.XXXXXX")"
  GOBIN="${out}" go install -trimpath "$@" "${pkg}"
  mv "${out}/$(basename "${pkg%@*}")" "${BIN_DIR}/${name}"
  rm -rf "${out}"
}
