#!/usr/bin/env bash
# Build the puller's container image from Containerfile with podman or docker, whichever has an
# engine that actually answers. Exits 1 with a plain message when none does.
#   IMAGE=quay.io/me/kubernetes-image-puller:dev hack/build-image.sh
#   CONTAINER_ENGINE=docker hack/build-image.sh     (force one)
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
    echo "make image: no container engine is available (tried: ${CONTAINER_ENGINE:-podman docker};" \
         "'<engine> info' must succeed). The image was not built." >&2
    exit 1
fi

echo "Building $image with $engine" >&2
exec "$engine" build -f "$root/Containerfile" -t "$image" "$root"
