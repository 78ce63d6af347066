"""The puller's configuration: every environment variable parsed and validated here, once.

No other module reads ``os.environ``. ``load_config`` collects *every* problem before it
raises, so an administrator fixing a ConfigMap sees all mistakes in one go instead of one
per pod restart. Nothing is silently dropped: an entry that cannot be understood is an error.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import ssl
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from imagepuller.affinity import FIELDS as AFFINITY_FIELDS
from imagepuller.affinity import affinity_problems
from imagepuller.durations import DurationError, parse_duration
from imagepuller.imageref import check_image_reference

# Where the original documentation's tables (3.37-3.39) and the Go code disagree, the
# documentation wins: these are the defaults an administrator reads about.
DEFAULT_KIP_IMAGE = "registry.redhat.io/devspaces/imagepuller-rhel8:latest"
DEFAULT_NAME = "kubernetes-image-puller"
DEFAULT_NAMESPACE = "k8s-image-puller"
DEFAULT_READY_TIMEOUT = "5m"

# The init container's name; no image container may take it (names share one namespace).
INIT_CONTAINER_NAME = "copy-sleep"

# Every pattern is used with fullmatch: `$` would also match before a final newline.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

# Kubernetes' own quantity syntax (ASCII digits only, one suffix or exponent).
_QUANTITY = re.compile(
    r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?"
)
# What each suffix multiplies by (a decimal exponent, e3, is read by Decimal itself).
_QUANTITY_FACTORS = {
    **{s: Decimal(1024) ** p for p, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), 1)},
    **{s: Decimal(10) ** p for s, p in (("n", -9), ("u", -6), ("m", -3), ("k", 3), ("M", 6))},
    **{s: Decimal(10) ** p for s, p in (("G", 9), ("T", 12), ("P", 15), ("E", 18))},
}
_QUANTITY_MAX = Decimal(2**63) / 1000  # what Kubernetes can hold (int64 milli-units)
_DECIMAL = re.compile(r"([0-9]+(\.[0-9]*)?|\.[0-9]+)")
# Label and annotation keys: [prefix/]name, prefix a DNS-1123 subdomain.
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
LABEL_VALUE_MAX = 63
# The API's limit on all of an object's annotations: keys and values, in bytes of UTF-8.
ANNOTATIONS_SIZE_MAX = 256 * 1024

# The puller's own annotations (spec hash, refresh time, controller) live under this prefix, so
# DAEMONSET_ANNOTATIONS may not use it: a key of ours there would be overwritten or misread.
RESERVED_ANNOTATION_PREFIX = "imagepuller.io/"

# JSON settings deeper than this are refused: a real affinity is about 8 levels deep, and deep
# values would later break deepcopy, YAML and JSON serialisation with RecursionError.
JSON_MAX_DEPTH = 32
_SURROGATE = re.compile("[\ud800-\udfff]")
_INT64 = (-(2**63), 2**63 - 1)
# Problems quote the offending value; longer values are shortened to this many characters.
_SHOWN_MAX = 200

# Bounds that keep every duration a real, schedulable time (and out of float overflow).
INTERVAL_HOURS_RANGE = (0.001, 8760.0)  # 3.6 seconds .. one year
READY_TIMEOUT_RANGE = (1.0, 86400.0)  # one second .. one day

# IMAGES_FROM: lists of images read over HTTP(S). The fetch blocks the controller's loop, so
# its timeout is bounded; the limits keep a wrong URL (a web page, a huge file) from loading
# the cluster with containers.
DEFAULT_IMAGES_FROM_TIMEOUT = "10s"
DEFAULT_IMAGES_FROM_TIMEOUT_SECONDS = parse_duration(DEFAULT_IMAGES_FROM_TIMEOUT)
IMAGES_FROM_TIMEOUT_RANGE = (1.0, 300.0)
DEFAULT_IMAGES_FROM_MAX_IMAGES = 100
IMAGES_FROM_MAX_IMAGES_RANGE = (1, 1000)
DEFAULT_IMAGES_FROM_MAX_BYTES = "1Mi"
DEFAULT_IMAGES_FROM_MAX_BYTES_VALUE = 1024 * 1024  # the same, in bytes (a test checks)
IMAGES_FROM_MAX_BYTES_RANGE = (1, 64 * 1024 * 1024)
# Each list is read at start and before every refresh, each within IMAGES_FROM_TIMEOUT.
IMAGES_FROM_MAX_LISTS = 10

_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
_TOLERATION_STRINGS = ("key", "operator", "value", "effect")
# The API treats an empty operator as Equal.
_TOLERATION_OPERATORS = ("Exists", "Equal", "")
_TAINT_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")
# rolling: each refresh rolls the pods in place (maxUnavailable 0, maxSurge REFRESH_MAX_SURGE);
# recreate: the Go original's delete-and-create.
REFRESH_STRATEGIES = ("rolling", "recreate")
DEFAULT_REFRESH_MAX_SURGE = "10%"
# maxSurge is an IntOrString: a count (int32) or a percentage of the nodes.
_SURGE_COUNT_MAX = 2**31 - 1
_SURGE = re.compile(r"(?P<number>[0-9]+)(?P<percent>%?)")

# Every variable load_config reads (a key of the ConfigMap that is none of these is not a setting).
SETTINGS = frozenset(
    {
        "IMAGES",
        "CACHING_INTERVAL_HOURS",
        "CACHING_MEMORY_REQUEST",
        "CACHING_MEMORY_LIMIT",
        "CACHING_CPU_REQUEST",
        "CACHING_CPU_LIMIT",
        "DAEMONSET_NAME",
        "DEPLOYMENT_NAME",
        "NAMESPACE",
        "NODE_SELECTOR",
        "AFFINITY",
        "TOLERATIONS",
        "IMAGE_PULL_SECRETS",
        "DAEMONSET_ANNOTATIONS",
        "KIP_IMAGE",
        "READY_TIMEOUT",
        "REFRESH_STRATEGY",
        "REFRESH_MAX_SURGE",
        "LOG_FORMAT",
        "LOG_LEVEL",
        "KUBECONFIG",
        "POD_NAMESPACE",
        "CONFIGMAP_NAME",
        "IMAGES_FROM",
        "IMAGES_FROM_CA_BUNDLE",
        "IMAGES_FROM_TIMEOUT",
        "IMAGES_FROM_MAX_IMAGES",
        "IMAGES_FROM_MAX_BYTES",
        "IMAGES_FROM_HOSTS",
        "METRICS_PORT",
        "METRICS_HOST",
        "HEALTHZ_STUCK_AFTER",
    }
)

# Variables that describe the controller's process rather than the DaemonSet: read from the
# environment only, never from a live edit of the ConfigMap. The Deployment sets the first four
# with `env:`, which wins over the ConfigMap's `envFrom` in the pod as well.
ENV_ONLY_VARIABLES = frozenset(
    {
        "DEPLOYMENT_NAME",
        "POD_NAMESPACE",
        "POD_NAME",
        "CONFIGMAP_NAME",
        "KUBECONFIG",
        # The port the probes and Prometheus reach is bound once, at start.
        "METRICS_PORT",
        "METRICS_HOST",
        "HEALTHZ_STUCK_AFTER",
        # Whoever may edit the ConfigMap sets IMAGES_FROM; the hosts it may name are set in the
        # Deployment, where a ConfigMap edit cannot widen them.
        "IMAGES_FROM_HOSTS",
    }
)
DEFAULT_METRICS_PORT = 8080
DEFAULT_HEALTHZ_STUCK_AFTER = "3m"
DEFAULT_HEALTHZ_STUCK_AFTER_SECONDS = parse_duration(DEFAULT_HEALTHZ_STUCK_AFTER)
HEALTHZ_STUCK_AFTER_RANGE = (1.0, 3600.0)


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

    # IMAGES: `name=image;name=image;`, order kept (containers follow it); required unless
    # IMAGES_FROM is given.
    images: tuple[CachedImage, ...]
    # CACHING_INTERVAL_HOURS: hours between refreshes (re-pulls, see REFRESH_STRATEGY); default 1.
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
    # REFRESH_STRATEGY: rolling (default; the pods are replaced in place, each node's new pod
    # ready before its old one goes) or recreate (the DaemonSet is deleted and created again).
    refresh_strategy: str = "rolling"
    # REFRESH_MAX_SURGE: how many nodes refresh at once in a rolling refresh, the DaemonSet's
    # maxSurge: an int for a count of nodes (>= 1) or a percentage string "1%".."100%"; "10%".
    refresh_max_surge: int | str = DEFAULT_REFRESH_MAX_SURGE
    # LOG_FORMAT: auto (JSON unless on a terminal), json or console. LOG_LEVEL: info.
    log_format: str = "auto"
    log_level: str = "info"
    # KUBECONFIG: passed to the Kubernetes client loader; empty means ~/.kube/config
    # and then the in-cluster service account.
    kubeconfig: str | None = None
    # POD_NAMESPACE: set by the Deployment (downward API) to the namespace the puller runs in;
    # only used to warn when NAMESPACE points elsewhere, where its Role grants nothing.
    pod_namespace: str | None = None
    # CONFIGMAP_NAME: the puller's own ConfigMap (in the namespace it runs in), read and watched
    # through the API for live edits; set by the Deployment. Empty (default): none, the settings
    # come from the environment only.
    configmap_name: str | None = None
    # IMAGES_FROM: URLs of `external_images.txt` lists (http or https), separated by `;` or
    # spaces; their images are added to IMAGES, read at start and before each refresh.
    images_from: tuple[str, ...] = ()
    # IMAGES_FROM_CA_BUNDLE: PEM certificates (the text, or a file's path) trusted for https
    # lists besides the system's CAs.
    images_from_ca_bundle: str | None = None
    # IMAGES_FROM_TIMEOUT: bound on reading one list; 10s.
    images_from_timeout_seconds: float = DEFAULT_IMAGES_FROM_TIMEOUT_SECONDS
    # IMAGES_FROM_MAX_IMAGES / IMAGES_FROM_MAX_BYTES: at most this many images from all lists
    # together (100), and this many bytes per list (1Mi); above them a list is not used.
    images_from_max_images: int = DEFAULT_IMAGES_FROM_MAX_IMAGES
    images_from_max_bytes: int = DEFAULT_IMAGES_FROM_MAX_BYTES_VALUE
    # IMAGES_FROM_HOSTS: the hosts lists may be read from (IMAGES_FROM, and every redirect),
    # each `host` (any port) or `host:port`, lowercased; empty (default): any host.
    images_from_hosts: tuple[str, ...] = ()
    # METRICS_PORT: /metrics, /healthz and /readyz; 8080, 0 turns them off.
    metrics_port: int = DEFAULT_METRICS_PORT
    # METRICS_HOST: the address to listen on; empty (default): every interface.
    metrics_host: str = ""
    # HEALTHZ_STUCK_AFTER: /healthz fails when a look has heard nothing from the API for this
    # long (a blocked call); 3m.
    healthz_stuck_after_seconds: float = DEFAULT_HEALTHZ_STUCK_AFTER_SECONDS

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
            "refresh_strategy": self.refresh_strategy,
            "refresh_max_surge": self.refresh_max_surge,
            "configmap_name": self.configmap_name,
            "images_from": list(self.images_from),
            "images_from_ca_bundle": bool(self.images_from_ca_bundle),
            "images_from_timeout_seconds": self.images_from_timeout_seconds,
            "images_from_max_images": self.images_from_max_images,
            "images_from_max_bytes": self.images_from_max_bytes,
            "images_from_hosts": list(self.images_from_hosts),
            "metrics_port": self.metrics_port,
            "metrics_host": self.metrics_host,
            "healthz_stuck_after_seconds": self.healthz_stuck_after_seconds,
        }


def memory_limit_bytes(config: Config) -> Decimal:
    return quantity_value(config.memory_limit)


def quantity_value(raw: str) -> Decimal:
    """A Kubernetes quantity's value (``20Mi``, ``.5``, ``200m``, ``1e3``). Our own few lines,
    not the client's ``parse_quantity``: importing that loads the whole Kubernetes client,
    which ``render``, ``check`` and ``images`` otherwise never need. ValueError when
    ``raw`` is not a quantity, ArithmeticError when it overflows."""
    match = _QUANTITY.fullmatch(raw)
    if match is None:
        raise ValueError(f"{raw!r} is not a quantity")
    number, suffix = match.group(1), match.group(2) or ""
    if suffix in _QUANTITY_FACTORS:
        return Decimal(number) * _QUANTITY_FACTORS[suffix]
    return Decimal(number + suffix)  # no suffix, or a decimal exponent


class _Invalid(ValueError):
    """Several problems with one variable's value, each reported on its own line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def _show(value: str) -> str:
    """``value`` quoted for a problem line, shortened when long (a value can be 256 KiB)."""
    if len(value) <= _SHOWN_MAX:
        return repr(value)
    return f"{value[:_SHOWN_MAX]!r}... ({len(value)} characters)"


def _show_json(value: Any) -> str:
    """A parsed JSON value as the administrator wrote it, shortened."""
    text = json.dumps(value)
    return text if len(text) <= 60 else f"{text[:60]}..."


class Problems:
    """Collects problems; ``get`` parses one variable and records failure instead of raising."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.items: list[str] = []
        self.failed: set[str] = set()  # variables whose value could not be used

    def add(self, variable: str, value: str, expected: str) -> None:
        self.items.append(f"{variable}={_show(value)}: {expected}")
        self.failed.add(variable)

    def get(self, variable: str, default: Any, parse: Callable[[str], Any]) -> Any:
        raw = self.env.get(variable)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except _Invalid as err:
            for problem in err.problems:
                self.add(variable, raw, problem)
            return default
        except ValueError as err:
            self.add(variable, raw, str(err))
            return default


def load_config(env: Mapping[str, str]) -> Config:
    """Build a ``Config`` from ``env`` (normally ``os.environ``); raise ``ConfigError``."""
    problems = Problems(env)
    images_from = problems.get("IMAGES_FROM", (), _urls)
    images_from_hosts = problems.get("IMAGES_FROM_HOSTS", (), parse_images_from_hosts)
    _check_list_hosts(images_from, images_from_hosts, problems)
    # A given IMAGES_FROM that is wrong is reported as such, not as a missing IMAGES too.
    given_lists = bool((env.get("IMAGES_FROM") or "").strip())
    images = _parse_images(env.get("IMAGES"), problems, required=not given_lists)
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
        if quantity_value(request) > quantity_value(limit):
            problems.items.append(
                f"CACHING_{kind}_REQUEST={_show(request)} is more than "
                f"CACHING_{kind}_LIMIT={_show(limit)}: "
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
        kip_image=problems.get("KIP_IMAGE", DEFAULT_KIP_IMAGE, check_image_reference),
        ready_timeout_seconds=problems.get(
            "READY_TIMEOUT", parse_duration(DEFAULT_READY_TIMEOUT), _positive_duration
        ),
        refresh_strategy=problems.get("REFRESH_STRATEGY", "rolling", choice(REFRESH_STRATEGIES)),
        refresh_max_surge=problems.get("REFRESH_MAX_SURGE", DEFAULT_REFRESH_MAX_SURGE, _max_surge),
        log_format=problems.get("LOG_FORMAT", "auto", choice(LOG_FORMATS)),
        log_level=problems.get("LOG_LEVEL", "info", choice(LOG_LEVELS)),
        kubeconfig=env.get("KUBECONFIG") or None,
        pod_namespace=env.get("POD_NAMESPACE") or None,
        configmap_name=problems.get("CONFIGMAP_NAME", None, _dns_subdomain),
        images_from=images_from,
        images_from_ca_bundle=problems.get("IMAGES_FROM_CA_BUNDLE", None, check_ca_bundle),
        images_from_timeout_seconds=problems.get(
            "IMAGES_FROM_TIMEOUT", DEFAULT_IMAGES_FROM_TIMEOUT_SECONDS, parse_images_from_timeout
        ),
        images_from_max_images=problems.get(
            "IMAGES_FROM_MAX_IMAGES", DEFAULT_IMAGES_FROM_MAX_IMAGES, parse_max_images
        ),
        images_from_max_bytes=problems.get(
            "IMAGES_FROM_MAX_BYTES", DEFAULT_IMAGES_FROM_MAX_BYTES_VALUE, parse_max_bytes
        ),
        images_from_hosts=images_from_hosts,
        **_endpoint_settings(problems),
    )
    if problems.items:
        raise ConfigError(problems.items)
    return config


# --- parsers: each raises ValueError whose text is the expected form -----------------------


def parse_images(raw: str) -> tuple[CachedImage, ...]:
    """An IMAGES value on its own (``imagepuller images --merge``); raises ConfigError."""
    problems = Problems({})
    images = _parse_images(raw, problems, required=True)
    if problems.items:
        raise ConfigError(problems.items)
    return images


def _parse_images(
    raw: str | None, problems: Problems, *, required: bool = True
) -> tuple[CachedImage, ...]:
    form = "expected `name=image;name=image;` (name: a DNS-1123 label, image: a reference)"
    if raw is None or raw.strip() == "":
        if required:
            problems.items.append(f"IMAGES is required (or IMAGES_FROM): {form}")
        return ()
    images: list[CachedImage] = []
    seen: set[str] = set()
    for position, entry in enumerate(raw.split(";"), start=1):
        entry = entry.strip()
        if not entry:
            continue  # trailing or doubled `;`, and blank lines between entries
        name, sep, image = (part.strip() for part in entry.partition("="))
        where = f"IMAGES entry {position} {_show(entry)}"
        if not sep or not name or not image:
            problems.items.append(f"{where}: {form}")
            continue
        try:
            _dns_label(name)
        except ValueError as err:
            problems.items.append(f"{where}: container name {_show(name)}: {err}")
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
            check_image_reference(image)
        except ValueError as err:
            problems.items.append(f"{where}: image {_show(image)}: {err}")
            continue
        seen.add(name)
        images.append(CachedImage(name, image))
    if not images and not problems.items:
        problems.items.append(f"IMAGES={_show(raw)} lists no image: {form}")
    return tuple(images)


def _parse_hours(raw: str) -> float:
    low, high = INTERVAL_HOURS_RANGE
    expected = f"expected a positive number of hours from {low:g} to {high:g}, such as 1 or 0.5"
    if not _DECIMAL.fullmatch(raw):
        raise ValueError(expected)
    hours = float(raw)
    if not low <= hours <= high:
        raise ValueError(expected)
    return hours


def _max_surge(raw: str) -> int | str:
    """A count of nodes (an int) or a percentage of them (the string with `%`): IntOrString."""
    expected = (
        f"expected a whole number of nodes from 1 to {_SURGE_COUNT_MAX}, such as 5, "
        "or a percentage of the nodes from 1% to 100%, such as 10%"
    )
    match = _SURGE.fullmatch(raw)
    if match is None:
        raise ValueError(expected)
    number = int(match["number"])
    if match["percent"]:
        if not 1 <= number <= 100:
            raise ValueError(expected)
        return f"{number}%"
    if not 1 <= number <= _SURGE_COUNT_MAX:
        raise ValueError(expected)
    return number


def _urls(raw: str) -> tuple[str, ...]:
    expected = (
        "expected URLs of image lists separated by ';' or spaces, each http:// or https:// "
        "with a host, such as https://devspaces.example.com/plugin-registry/v3/external_images.txt"
    )
    urls, bad = _entries(raw, r"[;\s]+", _list_url)
    if bad:
        raise ValueError(f"invalid URLs {_show_all(bad)}: {expected}")
    if not urls:
        raise ValueError(expected)
    if len(urls) > IMAGES_FROM_MAX_LISTS:
        raise ValueError(
            f"{len(urls)} lists, expected at most {IMAGES_FROM_MAX_LISTS} (each is read at start "
            "and before every refresh)"
        )
    return tuple(urls)


def _entries(
    raw: str, separators: str, read: Callable[[str], str | None]
) -> tuple[list[str], list[str]]:
    """The entries of a list setting, each as ``read`` gives it (None: invalid), once each in
    order; and the invalid ones, as written."""
    good: list[str] = []
    bad: list[str] = []
    for entry in re.split(separators, raw):
        if not entry:
            continue
        value = read(entry)
        if value is None:
            bad.append(entry)
        elif value not in good:
            good.append(value)
    return good, bad


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
    hosts, bad = _entries(raw, r"[,;\s]+", _host_entry)
    if bad:
        raise ValueError(f"invalid entries {_show_all(bad)}: {expected}")
    return tuple(hosts)


def _host_entry(entry: str) -> str | None:
    """``entry`` as `host` or `host:port` in the form `host_allowed` compares; None if invalid."""
    host = _normal_host(entry)  # a host alone, a bare IPv6 address included
    if host is not None:
        return host
    parts = urllib.parse.urlsplit(f"//{entry}")
    if parts.path or parts.query or parts.fragment or "@" in entry or entry.endswith(":"):
        return None
    try:
        port = parts.port
    except ValueError:  # not a number, or over 65535
        return None
    host = _normal_host(parts.hostname or "")
    if host is None or (port is not None and port < 1):
        return None
    return host if port is None else f"{host}:{port}"


def _normal_host(name: str) -> str | None:
    """A host name lowercased without its final dot, an IPv6 address in brackets; None when
    ``name`` is neither a DNS name nor an IP address (a URL's percent-escapes included)."""
    name = name.lower().removesuffix(".")
    if ":" in name:
        try:
            return f"[{ipaddress.IPv6Address(name).compressed}]"
        except ValueError:
            return None
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(name):
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
    host = _normal_host(parts.hostname or "")
    return host is not None and (host in hosts or f"{host}:{port}" in hosts)


def _check_list_hosts(urls: tuple[str, ...], hosts: tuple[str, ...], problems: Problems) -> None:
    refused = [url for url in urls if not host_allowed(url, hosts)]
    if refused:
        problems.items.append(
            f"IMAGES_FROM lists {_show_all(refused)} are on hosts IMAGES_FROM_HOSTS does not "
            f"allow ({', '.join(hosts)}): add their hosts there, or take them out of IMAGES_FROM"
        )


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


def _endpoint_settings(problems: Problems) -> dict[str, Any]:
    """METRICS_PORT, METRICS_HOST and HEALTHZ_STUCK_AFTER: the same for `run` and `operator`."""
    return {
        "metrics_port": problems.get("METRICS_PORT", DEFAULT_METRICS_PORT, _port),
        "metrics_host": problems.get("METRICS_HOST", "", _host),
        "healthz_stuck_after_seconds": problems.get(
            "HEALTHZ_STUCK_AFTER",
            DEFAULT_HEALTHZ_STUCK_AFTER_SECONDS,
            _bounded_duration(HEALTHZ_STUCK_AFTER_RANGE, "such as 3m or 90s"),
        ),
    }


def _port(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise ValueError("expected a TCP port from 1 to 65535, or 0 to turn the endpoints off")
    return int(raw)


def _host(raw: str) -> str:
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        raise ValueError(
            "expected an IP address to listen on, such as 127.0.0.1 or ::, or empty for every "
            "interface"
        ) from None
    return raw


def whole_number(bounds: tuple[int, int], what: str, example: int) -> Callable[[str], int]:
    """A parser of a count from ``bounds``, in ASCII digits only (int() would take "١٢")."""
    low, high = bounds

    def parse(raw: str) -> int:
        if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
            raise ValueError(
                f"expected a whole number of {what} from {low} to {high}, such as {example}"
            )
        return int(raw)

    return parse


parse_max_images = whole_number(IMAGES_FROM_MAX_IMAGES_RANGE, "images", 100)


def parse_max_bytes(raw: str) -> int:
    low, high = IMAGES_FROM_MAX_BYTES_RANGE
    expected = f"expected a size from {low} byte to 64Mi, such as 1Mi or 500Ki"
    value = positive_quantity(raw, expected)
    if value != value.to_integral_value() or not low <= value <= high:
        raise ValueError(expected)
    return int(value)


def _bounded_duration(bounds: tuple[float, float], example: str) -> Callable[[str], float]:
    low, high = bounds

    def parse(raw: str) -> float:
        expected = f"expected a duration from {low:g}s to {high:g}s, {example}"
        try:
            seconds = parse_duration(raw)
        except DurationError:
            raise ValueError(expected) from None
        if not (math.isfinite(seconds) and low <= seconds <= high):
            raise ValueError(expected)
        return seconds

    return parse


# IMAGES_FROM_TIMEOUT, and `images --timeout`.
parse_images_from_timeout = _bounded_duration(IMAGES_FROM_TIMEOUT_RANGE, "such as 10s or 1m")


def _positive_duration(raw: str) -> float:
    try:
        seconds = parse_duration(raw)
    except DurationError as err:
        raise ValueError(str(err)) from None
    low, high = READY_TIMEOUT_RANGE
    if not (math.isfinite(seconds) and low <= seconds <= high):
        raise ValueError("expected a duration from 1s to 24h, such as 5m or 300s")
    return seconds


def positive_quantity(raw: str, expected: str) -> Decimal:
    try:
        value = quantity_value(raw)
    except (ValueError, ArithmeticError):
        raise ValueError(expected) from None
    if value > _QUANTITY_MAX:
        raise ValueError("too large: Kubernetes holds quantities up to about 9.2e15 (8Pi)")
    if value <= 0:
        raise ValueError(expected)
    return value


def _memory_quantity(raw: str) -> str:
    value = positive_quantity(
        raw, "expected a memory quantity above zero, such as 20Mi, 1Gi or 500M"
    )
    if value != value.to_integral_value():
        raise ValueError(
            "expected a whole number of bytes, such as 20Mi (not a fraction of a byte)"
        )
    return raw


def _cpu_quantity(raw: str) -> str:
    value = positive_quantity(raw, "expected a CPU quantity of at least 1m, such as .2, 200m or 1")
    if value < Decimal("0.001"):
        raise ValueError("expected a CPU quantity of at least 1m (one thousandth of a core)")
    return raw


def _dns_label(raw: str) -> str:
    if len(raw) > 63 or not _DNS1123_LABEL.fullmatch(raw):
        raise ValueError(
            "expected a DNS-1123 label: at most 63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return raw


def _is_dns_subdomain(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS1123_SUBDOMAIN.fullmatch(name))


def _dns_subdomain(raw: str) -> str:
    if not _is_dns_subdomain(raw):
        raise ValueError(
            "expected a DNS-1123 name: lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters"
        )
    return raw


class _DuplicateKey(ValueError):
    pass


class _NotANumber(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise _NotANumber(name)  # Python's json takes NaN and Infinity, which are not JSON


def _json(raw: str, expected: str) -> Any:
    """``raw`` parsed as strict JSON that every later step (copy, YAML, the API) can handle."""
    try:
        value = json.loads(raw, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err.msg} at character {err.pos}); {expected}") from None
    except _DuplicateKey as err:
        raise ValueError(f"the key {_show(str(err))} is given twice; {expected}") from None
    except _NotANumber as err:
        raise ValueError(f"not valid JSON ({err} is not a JSON number); {expected}") from None
    except RecursionError:
        raise ValueError(
            f"nested too deeply (more than {JSON_MAX_DEPTH} levels); {expected}"
        ) from None
    except ValueError:  # Python's limit on the digits of an integer
        raise ValueError(f"not valid JSON (a number too long); {expected}") from None
    problem = _json_value_problem(value)
    if problem:
        raise ValueError(f"{problem}; {expected}")
    return value


def _json_value_problem(value: Any) -> str | None:
    """What in a parsed JSON value would break later, if anything (without recursing)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > JSON_MAX_DEPTH:
                return f"nested too deeply (more than {JSON_MAX_DEPTH} levels of objects and lists)"
            if isinstance(item, dict):
                for key, child in item.items():
                    if _SURROGATE.search(key):
                        return "not valid Unicode (a key holds an unpaired surrogate escape)"
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str) and _SURROGATE.search(item):
            return "not valid Unicode (a string holds an unpaired surrogate escape)"
        elif isinstance(item, float) and not math.isfinite(item):
            return "a number out of range"
    return None


def _show_all(values: list[str]) -> str:
    return "[" + ", ".join(_show(value) for value in values) + "]"


def _json_string_map(
    raw: str, expected: str, key_ok: Callable[[str], bool], key_form: str
) -> dict[str, str]:
    value = _json(raw, expected)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError(expected)
    bad_keys = [key for key in value if not key_ok(key)]
    if bad_keys:
        raise ValueError(f"invalid keys {_show_all(bad_keys)}: {key_form}")
    return value


_KEY_FORM = (
    "a key is [prefix/]name, name at most 63 letters, digits, '-', '_' or '.', starting and "
    "ending with a letter or digit, prefix a DNS-1123 name"
)
_LABEL_KEY_FORM = _KEY_FORM + " (lower case)"
_ANNOTATION_KEY_FORM = _KEY_FORM + " (upper or lower case)"


def _json_labels(raw: str) -> dict[str, str]:
    value = _json_string_map(
        raw,
        'expected a JSON object of node labels, such as {"key": "value"}',
        _is_qualified_name,
        _LABEL_KEY_FORM,
    )
    bad = [v for v in value.values() if not _is_label_value(v)]
    if bad:
        raise ValueError(
            f"invalid label values {_show_all(bad)}: at most {LABEL_VALUE_MAX} letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )
    return value


def _json_annotations(raw: str) -> dict[str, str]:
    value = _json_string_map(
        raw,
        'expected a JSON object of strings, such as {"key": "value"}',
        _is_annotation_key,
        _ANNOTATION_KEY_FORM,
    )
    reserved = [key for key in value if _is_reserved_annotation(key)]
    if reserved:
        raise ValueError(
            f"the keys {_show_all(reserved)} are reserved: the puller keeps its own state in "
            f"annotations under {RESERVED_ANNOTATION_PREFIX}; choose another prefix"
        )
    # As the API counts: bytes of UTF-8 (surrogates were refused above).
    size = sum(len(key.encode()) + len(text.encode()) for key, text in value.items())
    if size > ANNOTATIONS_SIZE_MAX:
        raise ValueError(
            f"the annotations total {size} bytes (keys and values, in UTF-8); Kubernetes "
            f"allows at most {ANNOTATIONS_SIZE_MAX} bytes (256 KiB) on an object"
        )
    return value


def _is_reserved_annotation(key: str) -> bool:
    prefix, slash, _ = key.rpartition("/")
    return bool(slash) and f"{prefix.translate(_ASCII_LOWER)}/" == RESERVED_ANNOTATION_PREFIX


def _is_qualified_name(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and not _is_dns_subdomain(prefix):
        return False
    return len(name) <= 63 and bool(_QUALIFIED_NAME.fullmatch(name))


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _is_annotation_key(key: str) -> bool:
    # The API checks annotation keys case-insensitively (ValidateAnnotations lower-cases them);
    # only ASCII is lowered here, so no exotic character passes that Go would lower otherwise.
    return _is_qualified_name(key.translate(_ASCII_LOWER))


def _is_label_value(value: str) -> bool:
    return len(value) <= LABEL_VALUE_MAX and bool(_LABEL_VALUE.fullmatch(value))


def _json_affinity(raw: str) -> dict[str, Any]:
    expected = "expected a JSON object shaped like a pod's affinity, with keys among " + ", ".join(
        AFFINITY_FIELDS
    )
    value = _json(raw, expected)
    if not isinstance(value, dict):
        raise ValueError(expected)
    problems = affinity_problems(value)
    if problems:
        raise _Invalid(problems)
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
    problems = [f"unknown keys {_show_all(unknown)}"] if unknown else []
    # null is an unset field, as the API decodes it; another JSON type is a problem of its own
    # (and the field is then not checked further: None below).
    fields: dict[str, str | None] = {}
    for name in _TOLERATION_STRINGS:
        given = toleration.get(name)
        fields[name] = "" if given is None else given if isinstance(given, str) else None
    key, operator, value, effect = (fields[name] for name in _TOLERATION_STRINGS)
    if key is None:
        problems.append(
            f"key {_show_json(toleration['key'])} is not a valid label key (expected a string)"
        )
    elif key and not _is_qualified_name(key):
        problems.append(f"key {_show(key)} is not a valid label key")
    if operator is None or operator not in _TOLERATION_OPERATORS:
        shown = _show_json(toleration["operator"])
        problems.append(f"operator must be Exists or Equal (not {shown})")
    elif operator == "Exists":
        if value:
            problems.append("operator Exists takes no value")
    else:  # Equal, or empty which the API takes for Equal
        if key == "":
            problems.append("an empty key (all taints) needs operator Exists")
        if value is not None and not _is_label_value(value):
            problems.append(f"value {_show(value)} is not a valid label value")
    if value is None:
        shown = _show_json(toleration["value"])
        problems.append(f"value {shown} is not a valid label value (expected a string)")
    if effect is None or effect not in _TAINT_EFFECTS:
        shown = _show_json(toleration["effect"])
        problems.append(
            f"effect must be NoSchedule, PreferNoSchedule, NoExecute or empty (not {shown})"
        )
    seconds = toleration.get("tolerationSeconds")
    if seconds is not None:
        low, high = _INT64
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            problems.append(f"tolerationSeconds must be a whole number (not {_show_json(seconds)})")
        elif not low <= seconds <= high:
            problems.append("tolerationSeconds is out of range: at most a 64-bit whole number")
        elif effect is not None and effect != "NoExecute":
            problems.append("tolerationSeconds needs effect NoExecute")
    return problems


def _secret_names(raw: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in raw.split(";") if name.strip())
    bad = [name for name in names if not _is_dns_subdomain(name)]
    if bad:
        raise ValueError(
            f"secret names {_show_all(bad)} are not DNS-1123 names; expected `secret1;secret2`"
        )
    twice = sorted(name for name, count in Counter(names).items() if count > 1)
    if twice:
        raise ValueError(
            f"secret names {_show_all(twice)} are given twice; expected `secret1;secret2`"
        )
    return names


def choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return raw.lower()

    return parse


# --- operator mode ---------------------------------------------------------------------------

DEFAULT_OPERATOR_NAMESPACE = "imagepuller-operator"


@dataclass(frozen=True)
class OperatorSettings:
    """`imagepuller operator`'s own settings; each puller's come from its resource."""

    # WATCH_NAMESPACES: comma-separated namespaces whose resources are served; empty: all.
    watch_namespaces: tuple[str, ...] = ()
    # POD_NAMESPACE: where the operator runs, and its leader-election Lease lives.
    namespace: str = DEFAULT_OPERATOR_NAMESPACE
    # POD_NAME: this replica's identity in the Lease (the host name and pid when unset).
    pod_name: str | None = None
    metrics_port: int = DEFAULT_METRICS_PORT
    metrics_host: str = ""
    healthz_stuck_after_seconds: float = DEFAULT_HEALTHZ_STUCK_AFTER_SECONDS
    log_format: str = "auto"
    log_level: str = "info"
    kubeconfig: str | None = None


def load_operator_settings(env: Mapping[str, str]) -> OperatorSettings:
    """Every problem at once, as ``load_config`` does; raises ConfigError."""
    problems = Problems(env)
    settings = OperatorSettings(
        watch_namespaces=problems.get("WATCH_NAMESPACES", (), _namespace_list),
        namespace=problems.get("POD_NAMESPACE", DEFAULT_OPERATOR_NAMESPACE, _dns_label),
        pod_name=env.get("POD_NAME") or None,
        **_endpoint_settings(problems),
        log_format=problems.get("LOG_FORMAT", "auto", choice(LOG_FORMATS)),
        log_level=problems.get("LOG_LEVEL", "info", choice(LOG_LEVELS)),
        kubeconfig=env.get("KUBECONFIG") or None,
    )
    if problems.items:
        raise ConfigError(problems.items)
    return settings


def _namespace_list(raw: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    bad = [name for name in names if len(name) > 63 or not _DNS1123_LABEL.fullmatch(name)]
    if bad:
        raise ValueError(
            f"invalid namespaces {_show_all(bad)}: expected namespace names separated by ',', "
            "such as team-a,team-b (empty: every namespace)"
        )
    return names
