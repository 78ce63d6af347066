#!/usr/bin/env bash
# Build the static sleep binary that the DaemonSet's init container copies.
# Usage: hack/build-sleep.sh OUT    (does nothing when OUT is newer than the source)
set -euo pipefail

out="${1:?usage: hack/build-sleep.sh OUT}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/sleep/sleep.c"
cc="${CC:-gcc}"

if [[ -f "$out" && "$out" -nt "$src" && "$out" -nt "${BASH_SOURCE[0]}" ]]; then
    exit 0
fi

mkdir -p "$(dirname "$out")"
tmp="$(mktemp "$(dirname "$out")/.sleep.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
# glibc's static libc is fine here: the program uses no NSS, no locale, no dlopen.
"$cc" -static -Os -Wall -Wextra -Werror -o "$tmp" "$src"
strip "$tmp"
chmod 0755 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
