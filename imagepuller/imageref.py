"""Image references as the kubelet reads them, checked before any DaemonSet is made.

The API accepts any string as a container's image; the kubelet then parses it with
distribution/reference (ParseNormalizedNamed) and a reference it refuses shows as
InvalidImageName on every node. These rules refuse the same references up front.
"""

from __future__ import annotations

import re

# An image reference as the kubelet accepts it (distribution/reference's ParseNormalizedNamed):
# [domain[:port]/]path[:tag][@digest], path components lower-case.
_REF_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_REF_HOST_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_REF_DOMAIN = rf"{_REF_HOST_PART}(?:\.{_REF_HOST_PART})*(?::[0-9]+)?"
_IMAGE_REFERENCE = re.compile(
    rf"(?:(?P<domain>{_REF_DOMAIN})/)?"
    rf"(?P<path>{_REF_COMPONENT.pattern}(?:/{_REF_COMPONENT.pattern})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    # Loose here so that a bad digest gets its own message below.
    r"(?:@(?P<algorithm>[A-Za-z0-9][A-Za-z0-9+._-]*):(?P<encoded>[A-Za-z0-9=_-]+))?"
)
# The digest algorithms the kubelet knows (go-digest's registered ones), each a fixed number of
# lower-case hex digits; any other algorithm is refused (InvalidImageName on every node).
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
# A whole reference of 64 hex digits is an image ID, which ParseNormalizedNamed refuses as a name.
_IMAGE_ID = re.compile(r"[a-f0-9]{64}")
# The name, once normalised to domain/path (docker.io/library/busybox), is at most 255
# characters: distribution/reference before v0.6 and containers/image (CRI-O) count the domain,
# v0.6 counts only the path; the stricter rule holds on every runtime.
IMAGE_NAME_MAX = 255
_DEFAULT_REGISTRY = "docker.io"
_LEGACY_DEFAULT_REGISTRY = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
# Nothing longer can be valid (name, ':' tag, '@sha512:' digest); checked before any regex runs.
_IMAGE_REFERENCE_MAX = IMAGE_NAME_MAX + 1 + 128 + 1 + len("sha512:") + 128


def check_image_reference(raw: str) -> str:
    """``raw`` if the kubelet can parse it, following distribution/reference's rules."""
    expected = (
        "expected an image reference such as registry.example.com/team/image:tag "
        "or image@sha256:<digest> (lower-case repository path)"
    )
    if len(raw) > _IMAGE_REFERENCE_MAX:
        raise ValueError(f"too long ({len(raw)} characters); {expected}")
    match = _IMAGE_REFERENCE.fullmatch(raw)
    if match is None:
        raise ValueError(expected)
    if _IMAGE_ID.fullmatch(raw):
        raise ValueError(
            "64 hexadecimal digits alone are an image ID, which the kubelet refuses as a name; "
            "give the full name, such as docker.io/library/<name>"
        )
    algorithm, encoded = match.group("algorithm"), match.group("encoded")
    if algorithm is not None:
        hex_length = _DIGEST_HEX_LENGTH.get(algorithm)
        if hex_length is None:
            raise ValueError(
                f"digest algorithm {algorithm!r} is not supported: "
                "expected sha256, sha384 or sha512"
            )
        if not re.fullmatch(f"[0-9a-f]{{{hex_length}}}", encoded or ""):
            raise ValueError(f"a {algorithm} digest is {hex_length} lower-case hexadecimal digits")
    domain, path = match.group("domain") or "", match.group("path")
    # As in the runtimes: a first part without '.' or ':' (and not localhost) is not a
    # registry host but part of the repository path, so it must be lower-case too.
    if domain and not ("." in domain or ":" in domain or domain == "localhost"):
        if not _REF_COMPONENT.fullmatch(domain):
            raise ValueError(expected)
        domain, path = "", f"{domain}/{path}"
    # Normalised as the kubelet does: busybox -> docker.io/library/busybox.
    if domain in ("", _LEGACY_DEFAULT_REGISTRY):
        domain = _DEFAULT_REGISTRY
    if domain == _DEFAULT_REGISTRY and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    length = len(domain) + 1 + len(path)
    if length > IMAGE_NAME_MAX:
        raise ValueError(
            f"the repository name is {length} characters once normalised to "
            f"{domain}/{path[:20]}...; the runtimes accept at most {IMAGE_NAME_MAX}"
        )
    return raw
