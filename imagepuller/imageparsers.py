"""Parsers of the image settings: IMAGES' entries, IMAGES_FROM's URLs, the hosts lists may be
read from, the CA bundle and the bounds on reading a list."""

from __future__ import annotations

import ipaddress
import ssl
import urllib.parse
from dataclasses import dataclass

from imagepuller.imageref import check_image_reference
from imagepuller.valueparsers import (
    Problem,
    ValueProblems,
    bounded_duration,
    dns_label,
    is_dns_subdomain,
    list_entries,
    positive_quantity,
    show,
    show_all,
    whole_number,
)

# The init container's name; no image container may take it (names share one namespace).
INIT_CONTAINER_NAME = "copy-sleep"

# IMAGES_FROM: lists of images read over HTTP(S). The fetch blocks the controller's loop, so
# its timeout is bounded; the limits keep a wrong URL (a web page, a huge file) from loading
# the cluster with containers.
IMAGES_FROM_TIMEOUT_RANGE = (1.0, 300.0)
IMAGES_FROM_MAX_IMAGES_RANGE = (1, 1000)
IMAGES_FROM_MAX_BYTES_RANGE = (1, 64 * 1024 * 1024)
# Each list is read at start and before every refresh, each within IMAGES_FROM_TIMEOUT.
IMAGES_FROM_MAX_LISTS = 10


@dataclass(frozen=True)
class CachedImage:
    """One image to keep on every node; ``name`` becomes the container name."""

    name: str
    image: str


IMAGES_FORM = "expected `name=image;name=image;` (name: a DNS-1123 label, image: a reference)"


def image_entries(raw: str) -> tuple[CachedImage, ...]:
    """IMAGES: `name=image;` entries in order; every bad entry is a problem of its own."""
    images: list[CachedImage] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for position, entry in enumerate(raw.split(";"), start=1):
        entry = entry.strip()
        if not entry:
            continue  # trailing or doubled `;`, and blank lines between entries
        name, sep, image = (part.strip() for part in entry.partition("="))
        where = f" entry {position} {show(entry)}"
        problem = _entry_problem(name, sep, image, seen)
        if problem:
            problems.append(Problem(problem, where))
            continue
        seen.add(name)
        images.append(CachedImage(name, image))
    if problems:
        raise ValueProblems(problems)
    if not images:
        raise ValueProblems([Problem(IMAGES_FORM, f"={show(raw)} lists no image")])
    return tuple(images)


def _entry_problem(name: str, sep: str, image: str, seen: set[str]) -> str | None:
    if not sep or not name or not image:
        return IMAGES_FORM
    try:
        dns_label(name)
    except ValueError as err:
        return f"container name {show(name)}: {err}"
    if name == INIT_CONTAINER_NAME:
        return f"the name {name!r} is reserved for the init container; choose another"
    if name in seen:
        return f"the name {name!r} is used twice; names must be unique"
    try:
        check_image_reference(image)
    except ValueError as err:
        return f"image {show(image)}: {err}"
    return None


def list_urls(raw: str) -> tuple[str, ...]:
    expected = (
        "expected URLs of image lists separated by ';' or spaces, each http:// or https:// "
        "with a host, such as https://devspaces.example.com/plugin-registry/v3/external_images.txt"
    )
    urls, bad = list_entries(raw, r"[;\s]+", _list_url)
    if bad:
        raise ValueError(f"invalid URLs {show_all(bad)}: {expected}")
    if not urls:
        raise ValueError(expected)
    if len(urls) > IMAGES_FROM_MAX_LISTS:
        raise ValueError(
            f"{len(urls)} lists, expected at most {IMAGES_FROM_MAX_LISTS} (each is read at start "
            "and before every refresh)"
        )
    return tuple(urls)


def _list_url(url: str) -> str | None:
    """An IMAGES_FROM entry: an http(s) URL with a host and a valid port; None otherwise."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    return url if parts.scheme in ("http", "https") and parts.hostname else None


def parse_images_from_hosts(raw: str) -> tuple[str, ...]:
    """IMAGES_FROM_HOSTS: each entry a host name or address, alone (any port) or `host:port`,
    returned as `host_allowed` compares them (lowercased, IPv6 in brackets)."""
    expected = (
        "expected host names or IP addresses separated by commas or spaces, each alone (any "
        "port) or as host:port (that port only), such as "
        "devspaces.example.com,registry.example.com:8443"
    )
    hosts, bad = list_entries(raw, r"[,;\s]+", _host_entry)
    if bad:
        raise ValueError(f"invalid entries {show_all(bad)}: {expected}")
    return tuple(hosts)


def _host_entry(entry: str) -> str | None:
    """``entry`` as `host` or `host:port` in the form `host_allowed` compares; None if invalid."""
    host = normal_host(entry)  # a host alone, a bare IPv6 address included
    if host is not None:
        return host
    parts = urllib.parse.urlsplit(f"//{entry}")
    if parts.path or parts.query or parts.fragment or "@" in entry or entry.endswith(":"):
        return None
    try:
        port = parts.port
    except ValueError:  # not a number, or over 65535
        return None
    host = normal_host(parts.hostname or "")
    if host is None or (port is not None and port < 1):
        return None
    return host if port is None else f"{host}:{port}"


def normal_host(name: str) -> str | None:
    """A host name lowercased without its final dot, an IPv6 address in brackets; None when
    ``name`` is neither a DNS name nor an IP address (a URL's percent-escapes included)."""
    name = name.lower().removesuffix(".")
    if ":" in name:
        try:
            return f"[{ipaddress.IPv6Address(name).compressed}]"
        except ValueError:
            return None
    if not is_dns_subdomain(name):
        return None
    return name


def host_allowed(url: str, hosts: tuple[str, ...]) -> bool:
    """May ``url`` be read under IMAGES_FROM_HOSTS ``hosts`` (empty: any host)? Compared with
    the host the URL names; a URL with user information or a percent-escaped host (which
    urllib would connect to unescaped) never matches."""
    if not hosts:
        return True
    parts = urllib.parse.urlsplit(url)
    if "@" in parts.netloc or "%" in parts.netloc:
        return False
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    host = normal_host(parts.hostname or "")
    return host is not None and (host in hosts or f"{host}:{port}" in hosts)


def load_ca_bundle(context: ssl.SSLContext, bundle: str) -> None:
    """Have ``context`` trust ``bundle`` too: PEM text, or the path of a file holding PEM
    certificates (IMAGES_FROM_CA_BUNDLE, `images --ca-bundle`)."""
    if "-----BEGIN" in bundle:
        context.load_verify_locations(cadata=bundle)
    else:
        context.load_verify_locations(cafile=bundle)


def check_ca_bundle(raw: str) -> str:
    expected = (
        "expected PEM certificates (the text itself, '-----BEGIN CERTIFICATE-----'...) or the "
        "path of a file holding them"
    )
    # A bare client context: loading the system's CAs as well (30-40 ms) would check nothing.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        load_ca_bundle(context, raw)
    except FileNotFoundError:
        raise ValueError(f"no such file; {expected}") from None
    except (ssl.SSLError, OSError, ValueError) as err:
        raise ValueError(f"not usable ({err}); {expected}") from None
    return raw


parse_max_images = whole_number(IMAGES_FROM_MAX_IMAGES_RANGE, "images", 100)


def parse_max_bytes(raw: str) -> int:
    low, high = IMAGES_FROM_MAX_BYTES_RANGE
    expected = f"expected a size from {low} byte to 64Mi, such as 1Mi or 500Ki"
    value = positive_quantity(raw, expected)
    if value != value.to_integral_value() or not low <= value <= high:
        raise ValueError(expected)
    return int(value)


# IMAGES_FROM_TIMEOUT, and `images --timeout`.
parse_images_from_timeout = bounded_duration(IMAGES_FROM_TIMEOUT_RANGE, "such as 10s or 1m")
