#!/usr/bin/env bash
# Build the puller's container image from Containerfile with podman or docker, whichever has an
# engine that actually answers. When none does, build the same image without an engine
# (hack/build-image-rootfs.sh: mmdebstrap + crane, needs root) into a tarball.
#   IMAGE=quay.io/me/kubernetes-image-puller:dev hack/build-image.sh
#   CONTAINER_ENGINE=docker hack/build-image.sh     (force one)
#   OUTPUT=build/image.tar hack/build-image.sh      (the tarball's path without an engine)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
image="${IMAGE:-localhost/kubernetes-image-puller:dev}"

engine_answers() {
    command -v "$1" >/dev/null 2>&1 && timeout 30 "$1" info >/dev/null 2>&1
}

engine=""
if [[ -n "${CONTAINER_ENGINE:-}" ]]; then
    if engine_answers "$CONTAINER_ENGINE"; then
        engine="$CONTAINER_ENGINE"
    fi
else
    for candidate in podman docker; do
        if engine_answers "$candidate"; then
            engine="$candidate"
            break
        fi
    done
fi

if [[ -z "$engine" ]]; then
    # Without an engine there is no local image store to tag into, so the image goes to a
    # tarball (like an engine's build, nothing is pushed): `docker load`, `ctr images import`
    # or `crane push` take it. IMAGE=host:port/name:tag hack/build-image-rootfs.sh pushes.
    output="${OUTPUT:-$root/build/kubernetes-image-puller.tar}"
    echo "make image: no container engine is available (tried: ${CONTAINER_ENGINE:-podman docker};" \
         "'<engine> info' must succeed); falling back to hack/build-image-rootfs.sh" \
         "(mmdebstrap + crane), writing $image to $output" >&2
    IMAGE="$image" OUTPUT="$output" exec bash "$root/hack/build-image-rootfs.sh"
fi

echo "Building $image with $engine" >&2
exec "$engine" build -f "$root/Containerfile" -t "$image" "$root"
