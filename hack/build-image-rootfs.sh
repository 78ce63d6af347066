#!/usr/bin/env bash
# Build the puller's container image without a container engine: a Debian bookworm root
# filesystem from mmdebstrap, Debian's python3, the package and its dependencies from wheels,
# the static sleep at /usr/bin/sleep, packed into an OCI image with crane.
#
#   IMAGE=127.0.0.1:5000/imagepuller:dev hack/build-image-rootfs.sh   push it to a registry
#   OUTPUT=build/imagepuller.tar hack/build-image-rootfs.sh            write a tarball
#                                        (`docker load`, `ctr images import`, `crane push`)
# Settings (environment):
#   IMAGE      reference to push to; with OUTPUT, the name the tarball carries
#              (default localhost/kubernetes-image-puller:dev)
#   OUTPUT     write a tarball instead of pushing
#   INSECURE=1 talk plain HTTP / unverified TLS to IMAGE's registry (implied for 127.0.0.1,
#              localhost and [::1])
#   CRANE      crane binary (else hack/build-node-stack.sh's cache, else crane on PATH)
#   FRESH_BASE=1  rebuild the cached base even when its inputs did not change (for example to
#              pick up Debian's security updates)
#   SOURCE_DATE_EPOCH  newest mtime in the layers (default: the last commit's time)
#
# The image has two layers:
#   base  Debian (variant essential + python3) and the runtime dependencies, byte-compiled.
#         Expensive (about a minute), cached under ~/.cache/imagepuller/image/<key>/, where the
#         key hashes this script, pyproject.toml's dependencies and the Debian suite/mirrors.
#   app   the imagepuller package and the static sleep: rebuilt every time, in seconds. A push
#         uploads only this layer when the registry already has the base.
#
# Needs root (mmdebstrap --mode=root and chroot) on linux/amd64. Progress goes to stderr; the
# last line of stdout is IMAGE@sha256:... after a push, or the tarball's path.
set -euo pipefail
# Files land in the image with the modes they get here: a restrictive umask would hide the
# package from uid 65532.
umask 022

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/.." && pwd)"
SELF="${HERE}/${BASH_SOURCE[0]##*/}"
# shellcheck source=hack/versions.sh
source "${HERE}/versions.sh"

# What the image is. tests/unit/test_image_build.py checks that Containerfile says the same.
IMAGE_ENTRYPOINT="imagepuller"
IMAGE_CMD="run"
IMAGE_USER="65532:65532"
IMAGE_ENV=(
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    "PYTHONUNBUFFERED=1"
    "PYTHONDONTWRITEBYTECODE=1"
)
IMAGE_LABELS=(
    "org.opencontainers.image.title=kubernetes-image-puller"
    "org.opencontainers.image.description=Keeps container images cached on every Kubernetes node."
    "org.opencontainers.image.licenses=EPL-2.0"
)
IMAGE_PLATFORM="linux/amd64"

SUITE="bookworm"
# Security updates too: a suite alone would give bookworm as released.
DEBIAN_SOURCES=(
    "deb http://deb.debian.org/debian ${SUITE} main"
    "deb http://deb.debian.org/debian ${SUITE}-updates main"
    "deb http://deb.debian.org/debian-security ${SUITE}-security main"
)
# Debian's python3 in bookworm; the wheels are chosen for it.
PYVER="3.11"
SITE="/usr/local/lib/python${PYVER}/dist-packages"

image="${IMAGE:-localhost/kubernetes-image-puller:dev}"
output="${OUTPUT:-}"

log() { echo "build-image-rootfs: $*" >&2; }
die() { echo "build-image-rootfs: error: $*" >&2; exit 1; }

# ----- preconditions -------------------------------------------------------------------------
if [[ -z "${IMAGE:-}" && -z "${output}" ]]; then
    die "say where the image goes: IMAGE=host:port/name:tag (push) or OUTPUT=file.tar (tarball)"
fi
[[ -n "${IMAGEPULLER_CACHE:-}${XDG_CACHE_HOME:-}${HOME:-}" ]] \
    || die "HOME is not set: the cache is ~/.cache/imagepuller (or set IMAGEPULLER_CACHE)"

find_crane() {
    if [[ -n "${CRANE:-}" ]]; then
        [[ -x "${CRANE}" ]] || die "CRANE=${CRANE} is not an executable file"
        echo "${CRANE}"
        return
    fi
    # Computed as hack/build-node-stack.sh computes its BIN_DIR (keep the two in step;
    # tests/unit/test_image_build.py compares them).
    local cache_root="${IMAGEPULLER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imagepuller}"
    local node_stack="${cache_root}/node-stack/containerd-${CONTAINERD_VERSION}_runc-${RUNC_VERSION}_cni-${CNI_PLUGINS_VERSION}_crictl-${CRICTL_VERSION}_registry-${REGISTRY_VERSION}_crane-${CRANE_VERSION}_k8s-${KUBERNETES_VERSION}"
    if [[ -x "${node_stack}/crane" ]]; then
        echo "${node_stack}/crane"
    elif command -v crane >/dev/null 2>&1; then
        command -v crane
    else
        die "crane not found: build it with 'bash hack/build-node-stack.sh' (it lands in" \
            "${node_stack}/), or set CRANE=/path/to/crane (${CRANE_VERSION})"
    fi
}
crane="$(find_crane)"

[[ "$(id -u)" == 0 ]] \
    || die "needs root: mmdebstrap --mode=root and chroot build and test the root filesystem"
[[ "$(uname -m)" == x86_64 ]] \
    || die "needs an x86_64 host: the linux/amd64 root filesystem's programs run in a chroot"

need_command() {  # need_command COMMAND DEBIAN-PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2 (for $1)"
    local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2")
    "${install[@]}" >&2 || { apt-get update -q >&2 && "${install[@]}" >&2; } \
        || die "could not install $2 with apt-get"
}
need_command mmdebstrap mmdebstrap
need_command gcc gcc   # hack/build-sleep.sh; libc6-dev comes with it
command -v python3 >/dev/null 2>&1 || die "needs python3 (3.11+) on the host"

start=$(date +%s)
epoch="${SOURCE_DATE_EPOCH:-$(git -C "${ROOT}" log -1 --format=%ct 2>/dev/null \
                              || stat -c %Y "${ROOT}/pyproject.toml")}"

CACHE_ROOT="${IMAGEPULLER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imagepuller}"
IMAGE_CACHE="${CACHE_ROOT}/image"
mkdir -p "${IMAGE_CACHE}"

# Everything temporary lives beside the cache (same filesystem: the finished base is renamed
# into place) and goes on exit, with the staging registry.
work="$(mktemp -d "${IMAGE_CACHE}/work.XXXXXX")"
registry_pid=""
cleanup() {
    if [[ -n "${registry_pid}" ]]; then
        kill "${registry_pid}" 2>/dev/null || true
        wait "${registry_pid}" 2>/dev/null || true
    fi
    # --one-file-system: should an interrupted mmdebstrap leave /proc or /sys mounted in the
    # root filesystem, rm must not walk into them.
    rm -rf --one-file-system "${work}"
}
trap cleanup EXIT
# A signal ends the script through its EXIT trap too (bash skips it on an untrapped SIGTERM).
trap 'exit 130' INT
trap 'exit 143' TERM

# chroot_run ROOTFS [chroot options] -- COMMAND...: a clean environment, so the host's PIP_*,
# PYTHON* and locale settings do not leak into the image's Python.
chroot_run() {
    local rootfs="$1"; shift
    local opts=()
    while [[ "$1" != "--" ]]; do opts+=("$1"); shift; done
    shift
    env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin HOME=/root PYTHONDONTWRITEBYTECODE=1 \
        chroot "${opts[@]}" "${rootfs}" "$@"
}

# layer_tar DIR OUT.tar.gz: a reproducible layer of DIR's contents: sorted names
# without "./", numeric owners as dpkg and we left them, no atime/ctime, mtimes clamped to the
# epoch, gzip without name or time. /dev, /proc, /sys and /tmp go in empty: the runtime mounts
# its own, and mmdebstrap's device nodes have no business in an image.
layer_tar() {
    local dir="$1" out="$2"
    (cd "${dir}" && find . -mindepth 1 \
        \( -path './dev/*' -o -path './proc/*' -o -path './sys/*' -o -path './tmp/*' \) \
        -prune -o -printf '%P\0' | LC_ALL=C sort -z) \
        | tar --create --file=- --directory="${dir}" --no-recursion --null --files-from=- \
              --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
              --numeric-owner --mtime="@${epoch}" --clamp-mtime \
        | gzip -n -6 > "${out}"
}

# ----- the base: Debian + python3 + the runtime dependencies (cached) ------------------------
# The dependencies as pyproject.toml lists them (not the whole file: a new version or a new
# test dependency must not rebuild the base).
dependencies="$(python3 - "${ROOT}/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["dependencies"]))
EOF
)" || die "could not read pyproject.toml's dependencies (the host's python3 needs tomllib: 3.11+)"

key="$( { cat "${SELF}"; echo "${dependencies}"; echo "${SUITE} ${PYVER}"
          printf '%s\n' "${DEBIAN_SOURCES[@]}"; } | sha256sum | cut -c1-16)"
base="${IMAGE_CACHE}/${SUITE}-py${PYVER}-${key}"

build_base() {
    python3 -m pip --version >/dev/null 2>&1 \
        || die "needs pip for the host's python3 (python3 -m pip): it downloads the wheels"
    local tmp="${work}/base"
    mkdir -p "${tmp}/wheels" "${tmp}/tools"
    local t0
    t0=$(date +%s)

    # Wheels for Debian's CPython 3.11 on glibc 2.36 (bookworm), whatever the host's Python is;
    # binary only, so nothing is compiled against the host's headers.
    log "downloading the runtime dependencies' wheels"
    printf '%s\n' "${dependencies}" > "${tmp}/requirements.txt"
    # pip takes --platform literally: every manylinux tag glibc 2.36 runs is named.
    local platforms=(--platform manylinux1_x86_64 --platform manylinux2010_x86_64
                     --platform manylinux2014_x86_64) v
    for v in $(seq 5 36); do platforms+=(--platform "manylinux_2_${v}_x86_64"); done
    python3 -m pip download --quiet --disable-pip-version-check --dest "${tmp}/wheels" \
        --only-binary=:all: --implementation cp --python-version "${PYVER}" --abi "cp${PYVER/./}" \
        "${platforms[@]}" --requirement "${tmp}/requirements.txt" >&2 \
        || die "pip could not download the dependencies' wheels (is PyPI reachable?)"
    # pip for the chroot, and setuptools to build the package; neither ends up in the image.
    python3 -m pip download --quiet --disable-pip-version-check --dest "${tmp}/tools" \
        --only-binary=:all: --no-deps pip 'setuptools>=77' >&2 \
        || die "pip could not download pip and setuptools"

    log "building the Debian ${SUITE} root filesystem with mmdebstrap (variant essential + python3)"
    # essential, not minbase: the image never installs packages, so apt, gpgv and the keyring
    # are dead weight. The merged-usr hooks install usr-is-merged, else apt satisfies
    # init-system-helpers with usrmerge, which drags in 45 MB of perl.
    # No documentation, man pages, translations or iconv modules (Python has its own codecs);
    # the copyright files stay.
    SOURCE_DATE_EPOCH="${epoch}" mmdebstrap --mode=root --format=directory --variant=essential \
        --include=python3 --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/lintian/*' \
        --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/gconv/*' \
        --quiet "${SUITE}" "${tmp}/rootfs" "${DEBIAN_SOURCES[@]}" >"${work}/mmdebstrap.log" 2>&1 \
        || die "mmdebstrap failed (is deb.debian.org reachable?):" \
               $'\n'"$(tail -n 30 "${work}/mmdebstrap.log")"
    local rootfs="${tmp}/rootfs"

    log "installing the runtime dependencies"
    mkdir -p "${rootfs}/tmp/wheels"
    cp "${tmp}"/wheels/*.whl "${tmp}"/tools/*.whl "${tmp}/requirements.txt" "${rootfs}/tmp/wheels/"
    local pip_whl
    pip_whl="$(cd "${rootfs}/tmp/wheels" && ls pip-*.whl)"
    # --break-system-packages: Debian marks its python3 as externally managed; in an image that
    # never runs apt there is nothing to break. /usr/local/lib/python3.11/dist-packages is
    # where Debian's python3 looks for packages not from Debian.
    chroot_run "${rootfs}" -- python3 "/tmp/wheels/${pip_whl}/pip" install --quiet \
        --no-index --find-links /tmp/wheels --no-cache-dir --no-compile --break-system-packages \
        --root-user-action=ignore --disable-pip-version-check --no-warn-script-location \
        --requirement /tmp/wheels/requirements.txt >&2 \
        || die "pip could not install the dependencies in the root filesystem"
    # pip and setuptools, unpacked and byte-compiled beside the root filesystem (not in it):
    # each build copies them in to install the package. Run from its wheel, pip would compile
    # itself on every start, and build isolation would install setuptools every time: 5 s more.
    chroot_run "${rootfs}" -- python3 "/tmp/wheels/${pip_whl}/pip" install --quiet \
        --no-index --no-cache-dir --break-system-packages --root-user-action=ignore \
        --disable-pip-version-check --target /tmp/tools "/tmp/wheels/${pip_whl}" \
        "/tmp/wheels/$(cd "${rootfs}/tmp/wheels" && ls setuptools-*.whl)" >&2 \
        || die "pip could not unpack pip and setuptools"
    rm -rf "${tmp}/tools"
    mv "${rootfs}/tmp/tools" "${tmp}/tools"
    rm -rf "${rootfs}/tmp/wheels"

    # kubernetes/aio is the client's asyncio twin (about 41 MB of the 75): the puller uses the
    # blocking client, and nothing outside kubernetes/aio imports it. The import check of every
    # imagepuller module below fails the build if that ever changes.
    rm -rf "${rootfs}${SITE}/kubernetes/aio"

    # Byte-compiled now, because uid 65532 cannot write __pycache__ (and PYTHONDONTWRITEBYTECODE
    # forbids it): without these every start compiles the client again (0.9 s instead of 0.4 s
    # to import the puller). unchecked-hash: the image's files never change, and the pycs stay
    # valid whatever mtimes the layer gives their sources.
    chroot_run "${rootfs}" -- python3 -m compileall -q -j0 --invalidation-mode unchecked-hash \
        "${SITE}" >/dev/null || die "compileall failed"

    # uid/gid 65532 get a name (distroless calls it "nonroot"): getpass.getuser() and
    # home-directory lookups then answer instead of raising KeyError.
    echo "nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin" >> "${rootfs}/etc/passwd"
    echo "nonroot:x:65532:" >> "${rootfs}/etc/group"

    # Leftovers of the build that no container needs: apt's state (apt is not installed),
    # logs, debconf's and dpkg's backups, and the set-uid/set-gid bits (su, newgrp,
    # unix_chkpwd): the puller never changes users, and a non-root image has no use for them.
    rm -rf "${rootfs}"/var/lib/apt "${rootfs}"/var/cache/apt "${rootfs}"/var/log/apt \
           "${rootfs}"/var/cache/debconf/*-old "${rootfs}"/var/lib/dpkg/*-old \
           "${rootfs}"/var/cache/ldconfig/aux-cache
    find "${rootfs}/var/log" -type f -exec truncate -s 0 {} +
    find "${rootfs}" -xdev -type f -perm /6000 -exec chmod ug-s {} +

    log "packing the base layer"
    # gzip -6, not -9: 1% larger (0.5 MB), 20 s faster.
    layer_tar "${rootfs}" "${tmp}/base.tar.gz"
    rm -rf "${tmp}/wheels" "${tmp}/requirements.txt"
    rm -rf --one-file-system "${base}"
    mv "${tmp}" "${base}"
    log "base ready in $(( $(date +%s) - t0 ))s: $(du -sm "${base}/rootfs" | cut -f1) MB," \
        "layer $(( $(stat -c %s "${base}/base.tar.gz") / 1024 / 1024 )) MB gzipped"
}

# One build of the base at a time; a second one waits and then finds it done.
exec 8>"${IMAGE_CACHE}/lock"
flock 8
if [[ -n "${FRESH_BASE:-}" || ! -f "${base}/base.tar.gz" ]]; then
    build_base
    # Bases of older inputs go once a newer one exists and they are a week unused.
    find "${IMAGE_CACHE}" -mindepth 1 -maxdepth 1 -type d -name "${SUITE}-py*" \
        ! -path "${base}" -mtime +7 -exec rm -rf --one-file-system {} +
else
    log "base cached: ${base}"
fi
touch "${base}"
flock -u 8

# ----- the app layer: the package and the static sleep ----------------------------------------
t_app=$(date +%s)
bash "${HERE}/build-sleep.sh" "${ROOT}/build/sleep"

# A scratch copy of the base to install into and test in. Hard links, not copies (0.1 s, not
# 3 s): nothing below writes into an existing file. pip and compileall only create files under
# /tmp/app, the app's files go over the base's with --remove-destination (a new inode), and the
# checks run with PYTHONDONTWRITEBYTECODE. Directories are new ones, so their modes are ours.
rootfs="${work}/rootfs"
cp -al "${base}/rootfs" "${rootfs}"
mkdir -p "${rootfs}/tmp/app/src"
cp -al "${base}/tools" "${rootfs}/tmp/app/tools"
# The source goes in as a copy: setuptools writes build/ and *.egg-info next to it, and the
# checkout's __pycache__ must not get in.
cp "${ROOT}/pyproject.toml" "${ROOT}/README.md" "${rootfs}/tmp/app/src/"
tar --create --file=- --directory="${ROOT}" --exclude=__pycache__ imagepuller \
    | tar --extract --file=- --directory="${rootfs}/tmp/app/src"
log "installing the imagepuller package"
# --root: the package's files land apart in /tmp/app/root, which becomes the layer.
# --no-build-isolation: setuptools is already on PYTHONPATH (pyproject.toml's build-system).
chroot_run "${rootfs}" -- env PYTHONPATH=/tmp/app/tools python3 -m pip install --quiet \
    --no-index --no-deps --no-build-isolation --no-cache-dir --no-compile \
    --break-system-packages --root-user-action=ignore --disable-pip-version-check \
    --no-warn-script-location --root /tmp/app/root /tmp/app/src >&2 \
    || die "pip could not install the imagepuller package"
chroot_run "${rootfs}" -- python3 -m compileall -q --invalidation-mode unchecked-hash \
    -s /tmp/app/root -p / "/tmp/app/root${SITE}" >/dev/null || die "compileall failed"
mv "${rootfs}/tmp/app/root" "${work}/app"
rm -rf "${rootfs}/tmp/app"
app="${work}/app"

# /bin is a symlink to usr/bin in bookworm: the file is usr/bin/sleep, replacing coreutils'.
install -D -m 0755 "${ROOT}/build/sleep" "${app}/usr/bin/sleep"
# A directory in an upper layer replaces the lower one's owner and mode: take them from the
# base (Debian's are not all root 0755).
while IFS= read -r -d '' d; do
    if [[ -d "${rootfs}/${d}" ]]; then
        chown --reference="${rootfs}/${d}" "${app}/${d}"
        chmod --reference="${rootfs}/${d}" "${app}/${d}"
    fi
done < <(cd "${app}" && find . -mindepth 1 -type d -printf '%P\0')

# The image's file system for the checks: base + app.
cp -a --remove-destination "${app}/." "${rootfs}/"

log "checking the root filesystem"
chroot_run "${rootfs}" -- imagepuller --version >&2 \
    || die "'imagepuller --version' failed in the root filesystem"
chroot_run "${rootfs}" --userspec=65532:65532 -- imagepuller --help >/dev/null \
    || die "'imagepuller --help' failed as uid 65532"
modules="$(cd "${app}${SITE}" && find imagepuller -name '*.py' ! -name '__main__.py' \
    | sed 's,/__init__\.py$,,; s,\.py$,,; s,/,.,g' | sort | paste -sd, -)"
chroot_run "${rootfs}" --userspec=65532:65532 -- python3 -c "import ${modules}" \
    || die "an imagepuller module does not import as uid 65532 (a missing dependency?)"
# The DaemonSet's init container: /bin/sh, cp and a sleep that runs without the image's libc.
chroot_run "${rootfs}" --userspec=65532:65532 -- /bin/sh -c \
    'cp /bin/sleep /tmp/kip-sleep && /tmp/kip-sleep 0s && rm /tmp/kip-sleep' \
    || die "the init container's 'cp /bin/sleep' would fail"
if readelf -l "${rootfs}/usr/bin/sleep" 2>/dev/null | grep -q 'INTERP'; then
    die "/usr/bin/sleep in the root filesystem is dynamically linked"
fi

layer_tar "${app}" "${work}/app.tar.gz"
gzipped=$(( $(stat -c %s "${base}/base.tar.gz") + $(stat -c %s "${work}/app.tar.gz") ))
log "app layer ready in $(( $(date +%s) - t_app ))s; the image: $(( gzipped / 1024 / 1024 )) MB" \
    "gzipped, $(du -sm "${rootfs}" | cut -f1) MB unpacked"

# ----- the image -------------------------------------------------------------------------------
# crane mutate works on an image in a registry: the layers are appended in a throwaway
# in-memory registry on 127.0.0.1 (crane's own), and mutate writes the configured image to its
# destination. IMAGE's tag therefore never points to an unconfigured image.
"${crane}" registry serve --address 127.0.0.1:0 2>"${work}/registry.log" &
registry_pid=$!
port=""
for _ in $(seq 100); do
    port="$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "${work}/registry.log")"
    [[ -n "${port}" ]] && break
    kill -0 "${registry_pid}" 2>/dev/null \
        || die "crane registry serve exited: $(cat "${work}/registry.log")"
    sleep 0.1
done
[[ -n "${port}" ]] \
    || die "crane registry serve did not report its port: $(cat "${work}/registry.log")"
staging="127.0.0.1:${port}/imagepuller:staging"

"${crane}" append --oci-empty-base -f "${base}/base.tar.gz" -f "${work}/app.tar.gz" \
    -t "${staging}" >/dev/null 2>"${work}/crane.log" \
    || die "crane append failed: $(cat "${work}/crane.log")"

mutate=("${crane}" mutate "${staging}" --entrypoint "${IMAGE_ENTRYPOINT}" --cmd "${IMAGE_CMD}"
        --user "${IMAGE_USER}" --set-platform "${IMAGE_PLATFORM}" -t "${image}")
for e in "${IMAGE_ENV[@]}"; do mutate+=(--env "${e}"); done
for l in "${IMAGE_LABELS[@]}"; do mutate+=(--label "${l}"); done

if [[ -n "${output}" ]]; then
    mkdir -p "$(dirname "${output}")"
    output="$(cd "$(dirname "${output}")" && pwd)/$(basename "${output}")"
    "${mutate[@]}" -o "${output}" 2>"${work}/crane.log" \
        || die "crane mutate failed: $(cat "${work}/crane.log")"
    log "wrote ${output} (tagged ${image}) in $(( $(date +%s) - start ))s"
    result="${output}"
else
    host="${image%%/*}"
    insecure=()
    case "${host}" in
        127.0.0.1|127.0.0.1:*|localhost|localhost:*|\[::1\]|\[::1\]:*) insecure=(--insecure) ;;
    esac
    [[ -n "${INSECURE:-}" ]] && insecure=(--insecure)
    result="$("${mutate[@]}" "${insecure[@]}" 2>"${work}/crane.log")" \
        || die "crane mutate could not push ${image}: $(cat "${work}/crane.log")"
    log "pushed ${image} in $(( $(date +%s) - start ))s"
fi
echo "${result}"
