#!/usr/bin/env bash
# Build hack/bundle-validate (operator-framework's bundle validators) once into
# ~/.cache/imagepuller/bundle-validate/<hash of its sources>/bundle-validate and print its path.
# The Go modules come from the module proxy the first time (about a minute), then from Go's cache.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/hack/bundle-validate"
key="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)"
out="${XDG_CACHE_HOME:-$HOME/.cache}/imagepuller/bundle-validate/$key/bundle-validate"

if [[ ! -x "$out" ]]; then
    mkdir -p "$(dirname "$out")"
    tmp="$(mktemp "$(dirname "$out")/.bundle-validate.XXXXXX")"
    trap 'rm -f "$tmp"' EXIT
    (cd "$src" && go build -o "$tmp" .) >&2
    chmod 0755 "$tmp"
    mv -f "$tmp" "$out"
    trap - EXIT
fi
echo "$out"
