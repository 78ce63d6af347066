"""The puller's configuration: every environment variable parsed and validated here, once.

No other module reads ``os.environ``. ``load_config`` collects *every* problem before it
raises, so an administrator fixing a ConfigMap sees all mistakes in one go instead of one
per pod restart. Nothing is silently dropped: an entry that cannot be understood is an error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

from imagepuller.durations import DurationError, parse_duration

# Where the original documentation's tables (3.37-3.39) and the Go code disagree, the
# documentation wins: these are the defaults an administrator reads about.
DEFAULT_KIP_IMAGE = "registry.redhat.io/devspaces/imagepuller-rhel8:latest"
DEFAULT_NAME = "kubernetes-image-puller"
DEFAULT_NAMESPACE = "k8s-image-puller"
DEFAULT_READY_TIMEOUT = "5m"

# The init container's name; no image container may take it (names share one namespace).
INIT_CONTAINER_NAME = "copy-sleep"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)

# An image reference as the container runtimes accept it (distribution/reference grammar):
# [domain[:port]/]path[:tag][@digest], path components lower-case.
_REF_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REF_HOST_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_REF_DOMAIN = rf"{_REF_HOST_PART}(?:\.{_REF_HOST_PART})*(?::[0-9]+)?"
_IMAGE_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_REF_DOMAIN})/)?(?P<path>{_REF_COMPONENT}(?:/{_REF_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<algorithm>[a-z0-9]+(?:[.+_-][a-z0-9]+)*):(?P<encoded>[a-zA-Z0-9=_-]+))?$"
)
# Registered digest algorithms have a fixed, lower-case hex encoding.
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha512": 128}

# Kubernetes' own quantity syntax (ASCII digits only, one suffix or exponent).
_QUANTITY = re.compile(
    r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_QUANTITY_MAX = Decimal(2**63) / 1000  # what Kubernetes can hold (int64 milli-units)
_DECIMAL = re.compile(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)$")
# Label and annotation keys: [prefix/]name, prefix a DNS-1123 subdomain.
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# Bounds that keep every duration a real, schedulable time (and out of float overflow).
INTERVAL_HOURS_RANGE = (0.001, 8760.0)  # 3.6 seconds .. one year
READY_TIMEOUT_RANGE = (1.0, 86400.0)  # one second .. one day

_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
_TOLERATION_OPERATORS = {"Exists", "Equal"}
_TAINT_EFFECTS = {"", "NoSchedule", "PreferNoSchedule", "NoExecute"}
_AFFINITY_KEYS = {"nodeAffinity", "podAffinity", "podAntiAffinity"}
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """The configuration is invalid; ``problems`` lists every reason, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "invalid configuration:\n" + "\n".join(f"  - {problem}" for problem in problems)
        )


@dataclass(frozen=True)
class CachedImage:
    """One image to keep on every node; ``name`` becomes the container name."""

    name: str
    image: str


@dataclass(frozen=True)
class Config:
    """Validated settings. Each field names its environment variable, unit and default."""

    # IMAGES: `name=image;name=image;`, required, order kept (containers follow it).
    images: tuple[CachedImage, ...]
    # CACHING_INTERVAL_HOURS: hours between refreshes (delete + recreate); default 1.
    caching_interval_hours: float = 1.0
    # CACHING_MEMORY_REQUEST / CACHING_MEMORY_LIMIT: per image container; 10Mi / 20Mi.
    memory_request: str = "10Mi"
    memory_limit: str = "20Mi"
    # CACHING_CPU_REQUEST / CACHING_CPU_LIMIT: per image container; .05 / .2 cores.
    cpu_request: str = ".05"
    cpu_limit: str = ".2"
    # DAEMONSET_NAME: the DaemonSet this puller owns.
    daemonset_name: str = DEFAULT_NAME
    # DEPLOYMENT_NAME: the puller's own Deployment, set as the DaemonSet's owner.
    deployment_name: str = DEFAULT_NAME
    # NAMESPACE: where the DaemonSet lives.
    namespace: str = DEFAULT_NAMESPACE
    # NODE_SELECTOR: JSON object of strings; {} selects every node.
    node_selector: Mapping[str, str] = field(default_factory=dict)
    # AFFINITY: JSON object shaped like a pod's `affinity`.
    affinity: Mapping[str, Any] = field(default_factory=dict)
    # TOLERATIONS: JSON list of pod tolerations.
    tolerations: tuple[Mapping[str, Any], ...] = ()
    # IMAGE_PULL_SECRETS: `secret1;secret2`, names of Secrets in NAMESPACE.
    image_pull_secrets: tuple[str, ...] = ()
    # DAEMONSET_ANNOTATIONS: JSON object of strings, put on the DaemonSet and its pods.
    daemonset_annotations: Mapping[str, str] = field(default_factory=dict)
    # KIP_IMAGE: image holding /bin/sh and a static /bin/sleep (copied by the init container).
    kip_image: str = DEFAULT_KIP_IMAGE
    # READY_TIMEOUT: bound on every wait (readiness, deletion); a duration such as 5m.
    ready_timeout_seconds: float = 300.0
    # LOG_FORMAT: auto (JSON unless on a terminal), json or console. LOG_LEVEL: info.
    log_format: str = "auto"
    log_level: str = "info"
    # KUBECONFIG: passed to the Kubernetes client loader; empty means ~/.kube/config
    # and then the in-cluster service account.
    kubeconfig: str | None = None
    # POD_NAMESPACE: set by the Deployment (downward API) to the namespace the puller runs in;
    # only used to warn when NAMESPACE points elsewhere, where its Role grants nothing.
    pod_namespace: str | None = None

    @property
    def caching_interval_seconds(self) -> float:
        return self.caching_interval_hours * 3600.0

    def summary(self) -> dict[str, Any]:
        """The effective settings, for the one start-up log line and `imagepuller check`."""
        return {
            "images": [f"{i.name}={i.image}" for i in self.images],
            "caching_interval_hours": self.caching_interval_hours,
            "memory_request": self.memory_request,
            "memory_limit": self.memory_limit,
            "cpu_request": self.cpu_request,
            "cpu_limit": self.cpu_limit,
            "daemonset_name": self.daemonset_name,
            "deployment_name": self.deployment_name,
            "namespace": self.namespace,
            "node_selector": dict(self.node_selector),
            "affinity": dict(self.affinity),
            "tolerations": [dict(t) for t in self.tolerations],
            "image_pull_secrets": list(self.image_pull_secrets),
            "daemonset_annotations": dict(self.daemonset_annotations),
            "kip_image": self.kip_image,
            "ready_timeout_seconds": self.ready_timeout_seconds,
        }


def memory_limit_bytes(config: Config) -> Decimal:
    return parse_quantity(config.memory_limit)


class _Problems:
    """Collects problems; ``get`` parses one variable and records failure instead of raising."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.items: list[str] = []
        self.failed: set[str] = set()  # variables whose value could not be used

    def add(self, variable: str, value: str, expected: str) -> None:
        self.items.append(f"{variable}={value!r}: {expected}")
        self.failed.add(variable)

    def get(self, variable: str, default: Any, parse: Callable[[str], Any]) -> Any:
        raw = self.env.get(variable)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError as err:
            self.add(variable, raw, str(err))
            return default


def load_config(env: Mapping[str, str]) -> Config:
    """Build a ``Config`` from ``env`` (normally ``os.environ``); raise ``ConfigError``."""
    problems = _Problems(env)
    images = _parse_images(env.get("IMAGES"), problems)
    interval = problems.get("CACHING_INTERVAL_HOURS", 1.0, _parse_hours)

    quantities = {}
    for variable, default in (
        ("CACHING_MEMORY_REQUEST", "10Mi"),
        ("CACHING_MEMORY_LIMIT", "20Mi"),
        ("CACHING_CPU_REQUEST", ".05"),
        ("CACHING_CPU_LIMIT", ".2"),
    ):
        check = _memory_quantity if "MEMORY" in variable else _cpu_quantity
        quantities[variable] = problems.get(variable, default, check)
    for kind in ("MEMORY", "CPU"):
        request_var, limit_var = f"CACHING_{kind}_REQUEST", f"CACHING_{kind}_LIMIT"
        if problems.failed & {request_var, limit_var}:
            continue  # already reported; comparing against a default would only confuse
        request, limit = quantities[request_var], quantities[limit_var]
        if parse_quantity(request) > parse_quantity(limit):
            problems.items.append(
                f"CACHING_{kind}_REQUEST={request!r} is more than CACHING_{kind}_LIMIT={limit!r}: "
                "the request must not exceed the limit"
            )

    config = Config(
        images=images,
        caching_interval_hours=interval,
        memory_request=quantities["CACHING_MEMORY_REQUEST"],
        memory_limit=quantities["CACHING_MEMORY_LIMIT"],
        cpu_request=quantities["CACHING_CPU_REQUEST"],
        cpu_limit=quantities["CACHING_CPU_LIMIT"],
        daemonset_name=problems.get("DAEMONSET_NAME", DEFAULT_NAME, _dns_label),
        deployment_name=problems.get("DEPLOYMENT_NAME", DEFAULT_NAME, _dns_subdomain),
        namespace=problems.get("NAMESPACE", DEFAULT_NAMESPACE, _dns_label),
        node_selector=problems.get("NODE_SELECTOR", {}, _json_labels),
        affinity=problems.get("AFFINITY", {}, _json_affinity),
        tolerations=problems.get("TOLERATIONS", (), _json_tolerations),
        image_pull_secrets=problems.get("IMAGE_PULL_SECRETS", (), _secret_names),
        daemonset_annotations=problems.get("DAEMONSET_ANNOTATIONS", {}, _json_annotations),
        kip_image=problems.get("KIP_IMAGE", DEFAULT_KIP_IMAGE, _image_reference),
        ready_timeout_seconds=problems.get(
            "READY_TIMEOUT", parse_duration(DEFAULT_READY_TIMEOUT), _positive_duration
        ),
        log_format=problems.get("LOG_FORMAT", "auto", _choice(LOG_FORMATS)),
        log_level=problems.get("LOG_LEVEL", "info", _choice(LOG_LEVELS)),
        kubeconfig=env.get("KUBECONFIG") or None,
        pod_namespace=env.get("POD_NAMESPACE") or None,
    )
    if problems.items:
        raise ConfigError(problems.items)
    return config


# --- parsers: each raises ValueError whose text is the expected form -----------------------


def _parse_images(raw: str | None, problems: _Problems) -> tuple[CachedImage, ...]:
    form = "expected `name=image;name=image;` (name: a DNS-1123 label, image: a reference)"
    if raw is None or raw.strip() == "":
        problems.items.append(f"IMAGES is required: {form}")
        return ()
    images: list[CachedImage] = []
    seen: set[str] = set()
    for position, entry in enumerate(raw.split(";"), start=1):
        entry = entry.strip()
        if not entry:
            continue  # trailing or doubled `;`, and blank lines between entries
        name, sep, image = (part.strip() for part in entry.partition("="))
        where = f"IMAGES entry {position} {entry!r}"
        if not sep or not name or not image:
            problems.items.append(f"{where}: {form}")
            continue
        try:
            _dns_label(name)
        except ValueError as err:
            problems.items.append(f"{where}: container name {name!r}: {err}")
            continue
        if name == INIT_CONTAINER_NAME:
            problems.items.append(
                f"{where}: the name {name!r} is reserved for the init container; choose another"
            )
            continue
        if name in seen:
            problems.items.append(f"{where}: the name {name!r} is used twice; names must be unique")
            continue
        try:
            _image_reference(image)
        except ValueError as err:
            problems.items.append(f"{where}: image {image!r}: {err}")
            continue
        seen.add(name)
        images.append(CachedImage(name, image))
    if not images and not problems.items:
        problems.items.append(f"IMAGES={raw!r} lists no image: {form}")
    return tuple(images)


def _parse_hours(raw: str) -> float:
    low, high = INTERVAL_HOURS_RANGE
    expected = f"expected a positive number of hours from {low:g} to {high:g}, such as 1 or 0.5"
    if not _DECIMAL.match(raw):
        raise ValueError(expected)
    hours = float(raw)
    if not low <= hours <= high:
        raise ValueError(expected)
    return hours


def _positive_duration(raw: str) -> float:
    try:
        seconds = parse_duration(raw)
    except DurationError as err:
        raise ValueError(str(err)) from None
    low, high = READY_TIMEOUT_RANGE
    if not (math.isfinite(seconds) and low <= seconds <= high):
        raise ValueError("expected a duration from 1s to 24h, such as 5m or 300s")
    return seconds


def _quantity(raw: str, expected: str) -> Decimal:
    if not _QUANTITY.match(raw):
        raise ValueError(expected)
    try:
        value = parse_quantity(raw)
    except (ValueError, ArithmeticError):
        raise ValueError(expected) from None
    if value > _QUANTITY_MAX:
        raise ValueError("too large: Kubernetes holds quantities up to about 9.2e15 (8Pi)")
    if value <= 0:
        raise ValueError(expected)
    return value


def _memory_quantity(raw: str) -> str:
    value = _quantity(raw, "expected a memory quantity above zero, such as 20Mi, 1Gi or 500M")
    if value != value.to_integral_value():
        raise ValueError(
            "expected a whole number of bytes, such as 20Mi (not a fraction of a byte)"
        )
    return raw


def _cpu_quantity(raw: str) -> str:
    value = _quantity(raw, "expected a CPU quantity of at least 1m, such as .2, 200m or 1")
    if value < Decimal("0.001"):
        raise ValueError("expected a CPU quantity of at least 1m (one thousandth of a core)")
    return raw


def _dns_label(raw: str) -> str:
    if len(raw) > 63 or not _DNS1123_LABEL.match(raw):
        raise ValueError(
            "expected a DNS-1123 label: at most 63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return raw


def _is_dns_subdomain(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS1123_SUBDOMAIN.match(name))


def _dns_subdomain(raw: str) -> str:
    if not _is_dns_subdomain(raw):
        raise ValueError(
            "expected a DNS-1123 name: lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters"
        )
    return raw


def _image_reference(raw: str) -> str:
    match = _IMAGE_REFERENCE.match(raw)
    domain = (match.group("domain") or "") if match else ""
    algorithm = (match.group("algorithm") or "") if match else ""
    hex_length = _DIGEST_HEX_LENGTH.get(algorithm)
    if hex_length and not re.fullmatch(rf"[0-9a-f]{{{hex_length}}}", match.group("encoded")):
        raise ValueError(f"a {algorithm} digest is {hex_length} lower-case hexadecimal digits")
    # As in the runtimes: a first part without '.' or ':' (and not localhost) is not a
    # registry host but part of the repository path, so it must be lower-case too.
    looks_like_host = "." in domain or ":" in domain or domain == "localhost"
    if (
        not match
        or (domain and not looks_like_host and not re.fullmatch(_REF_COMPONENT, domain))
        or len(match.group("path")) + len(domain) > 255
    ):
        raise ValueError(
            "expected an image reference such as registry.example.com/team/image:tag "
            "or image@sha256:<digest> (lower-case repository path)"
        )
    return raw


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _json(raw: str, expected: str) -> Any:
    try:
        return json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err.msg} at character {err.pos}); {expected}") from None
    except _DuplicateKey as err:
        raise ValueError(f"the key {err} is given twice; {expected}") from None
    except RecursionError:
        raise ValueError(f"nested too deeply; {expected}") from None


def _json_string_map(raw: str, expected: str) -> dict[str, str]:
    value = _json(raw, expected)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError(expected)
    bad_keys = [key for key in value if not _is_qualified_name(key)]
    if bad_keys:
        raise ValueError(
            f"invalid keys {bad_keys}: a key is [prefix/]name, name at most 63 letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )
    return value


def _json_labels(raw: str) -> dict[str, str]:
    value = _json_string_map(raw, 'expected a JSON object of node labels, such as {"key": "value"}')
    bad = [v for v in value.values() if not _is_label_value(v)]
    if bad:
        raise ValueError(
            f"invalid label values {bad}: at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return value


def _json_annotations(raw: str) -> dict[str, str]:
    return _json_string_map(raw, 'expected a JSON object of strings, such as {"key": "value"}')


def _is_qualified_name(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and not _is_dns_subdomain(prefix):
        return False
    return len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))


def _is_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def _json_affinity(raw: str) -> dict[str, Any]:
    expected = "expected a JSON object shaped like a pod's affinity, with keys among " + ", ".join(
        sorted(_AFFINITY_KEYS)
    )
    value = _json(raw, expected)
    if not isinstance(value, dict):
        raise ValueError(expected)
    unknown = sorted(set(value) - _AFFINITY_KEYS)
    if unknown or not all(isinstance(v, dict) for v in value.values()):
        detail = f" (unknown: {', '.join(unknown)})" if unknown else " (each value an object)"
        raise ValueError(expected + detail)
    return value


def _json_tolerations(raw: str) -> tuple[dict[str, Any], ...]:
    expected = (
        'expected a JSON list of tolerations, such as [{"key": "k", "operator": "Exists", '
        '"effect": "NoSchedule"}]'
    )
    value = _json(raw, expected)
    if not isinstance(value, list):
        raise ValueError(expected)
    problems = [
        f"item {index}: {problem}"
        for index, toleration in enumerate(value)
        for problem in _toleration_problems(toleration)
    ]
    if problems:
        raise ValueError("; ".join(problems) + f"; {expected}")
    return tuple(value)


def _toleration_problems(toleration: Any) -> list[str]:
    """What the API would reject in one toleration (all of it, not just the first)."""
    if not isinstance(toleration, dict):
        return ["is not an object"]
    unknown = sorted(set(toleration) - _TOLERATION_KEYS)
    problems = [f"unknown keys {unknown}"] if unknown else []
    key, value = toleration.get("key", ""), toleration.get("value", "")
    operator = toleration.get("operator", "Equal")
    effect = toleration.get("effect", "")
    seconds = toleration.get("tolerationSeconds")
    if not isinstance(key, str) or (key and not _is_qualified_name(key)):
        problems.append(f"key {key!r} is not a valid label key")
    if not isinstance(value, str) or not _is_label_value(value):
        problems.append(f"value {value!r} is not a valid label value")
    if operator not in _TOLERATION_OPERATORS:
        problems.append("operator must be Exists or Equal")
    elif operator == "Exists" and value:
        problems.append("operator Exists takes no value")
    elif operator == "Equal" and not key:
        problems.append("an empty key (all taints) needs operator Exists")
    if effect not in _TAINT_EFFECTS:
        problems.append("effect must be NoSchedule, PreferNoSchedule, NoExecute or empty")
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            problems.append("tolerationSeconds must be a whole number")
        elif effect != "NoExecute":
            problems.append("tolerationSeconds needs effect NoExecute")
    return problems


def _secret_names(raw: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in raw.split(";") if name.strip())
    bad = [name for name in names if not _is_dns_subdomain(name)]
    if bad:
        raise ValueError(f"secret names {bad} are not DNS-1123 names; expected `secret1;secret2`")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"secret names {twice} are given twice; expected `secret1;secret2`")
    return names


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return raw.lower()

    return parse
