"""Every setting of a puller, once: its variable, its Config attribute, its resource field, its
default as an administrator writes it, its parser and what it means.

The ConfigMap and environment reading (``config.load_config``), the resource reading
(``resource.config_from_resource``), ``Config.summary()`` and the README's configuration
table (checked by a test) all follow ``TABLE``; adding a setting is adding a row here and its
attribute to ``Config``.

Two scopes: a *puller* setting says what to cache and how; a *process* setting says how the
process that runs pullers logs, listens and reaches the API. A resource may set only puller
settings with a spec field; no process setting has one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from imagepuller.imageparsers import (
    CachedImage,
    check_ca_bundle,
    image_entries,
    list_urls,
    parse_images_from_hosts,
    parse_images_from_timeout,
    parse_max_bytes,
    parse_max_images,
)
from imagepuller.imageref import check_image_reference
from imagepuller.jsonparsers import json_affinity, json_annotations, json_labels, json_tolerations
from imagepuller.valueparsers import (
    LOG_FORMATS,
    LOG_LEVELS,
    REFRESH_STRATEGIES,
    as_written,
    choice,
    cpu_quantity,
    dns_label,
    dns_subdomain,
    memory_quantity,
    parse_hours,
    parse_listen_address,
    parse_max_surge,
    parse_port,
    parse_ready_timeout,
    parse_stuck_after,
    secret_names,
)

Scope = Literal["puller", "process"]

# Shared by two settings (the DaemonSet and the puller's own Deployment are both named so).
DEFAULT_NAME = "kubernetes-image-puller"


def _plain(value: Any) -> Any:
    """A value as `check` and the start-up log show it: JSON types only."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _shown_images(images: tuple[CachedImage, ...]) -> list[str]:
    return [f"{image.name}={image.image}" for image in images]


def _is_given(bundle: str | None) -> bool:
    return bool(bundle)  # certificates are long and not secret, but say nothing useful in a log


@dataclass(frozen=True)
class Setting:
    """One setting. ``default`` is the text an administrator would write ("" when the setting
    is empty by default, the value then being ``empty``); it is parsed like any given value,
    so the two can never disagree."""

    variable: str
    attribute: str
    default: str
    parse: Callable[[str], Any]
    description: str
    scope: Scope = "puller"
    # The KubernetesImagePuller resource's field for it; None: a resource cannot set it.
    spec_field: str | None = None
    # False: read from the Deployment's environment only, never from a live ConfigMap edit.
    live: bool = True
    empty: Any = None
    # Required unless another setting says otherwise (IMAGES, unless IMAGES_FROM is given).
    required: bool = False
    # How Config.summary() shows the value; None: not shown.
    shown: Callable[[Any], Any] | None = _plain

    def __post_init__(self) -> None:
        if self.scope == "process" and self.spec_field is not None:
            raise ValueError(f"{self.variable}: a process setting has no resource field")

    @property
    def default_value(self) -> Any:
        return self.empty if self.default == "" else self.parse(self.default)


TABLE: tuple[Setting, ...] = (
    Setting(
        "IMAGES", "images", "", image_entries,
        "`name=image;name=image;`, order kept (containers follow it)",
        spec_field="images", empty=(), required=True, shown=_shown_images,
    ),
    Setting(
        "CACHING_INTERVAL_HOURS", "caching_interval_hours", "1", parse_hours,
        "hours between refreshes (re-pulls, see REFRESH_STRATEGY)",
        spec_field="cachingIntervalHours",
    ),
    Setting(
        "CACHING_MEMORY_REQUEST", "memory_request", "10Mi", memory_quantity,
        "memory request of each image container", spec_field="cachingMemoryRequest",
    ),
    Setting(
        "CACHING_MEMORY_LIMIT", "memory_limit", "20Mi", memory_quantity,
        "memory limit of each image container", spec_field="cachingMemoryLimit",
    ),
    # The casing of cachingCPU* is the community operator's.
    Setting(
        "CACHING_CPU_REQUEST", "cpu_request", ".05", cpu_quantity,
        "CPU request of each image container", spec_field="cachingCPURequest",
    ),
    Setting(
        "CACHING_CPU_LIMIT", "cpu_limit", ".2", cpu_quantity,
        "CPU limit of each image container", spec_field="cachingCPULimit",
    ),
    Setting(
        "DAEMONSET_NAME", "daemonset_name", DEFAULT_NAME, dns_label,
        "the DaemonSet this puller owns", spec_field="daemonsetName",
    ),
    Setting(
        "DEPLOYMENT_NAME", "deployment_name", DEFAULT_NAME, dns_subdomain,
        "the puller's own Deployment, set as the DaemonSet's owner",
        scope="process", live=False,
    ),
    # A resource's puller always lives in the resource's own namespace (no spec field).
    Setting(
        "NAMESPACE", "namespace", "k8s-image-puller", dns_label, "where the DaemonSet lives"
    ),
    Setting(
        "NODE_SELECTOR", "node_selector", "{}", json_labels,
        "JSON object of node labels; {} selects every node", spec_field="nodeSelector",
    ),
    Setting(
        "AFFINITY", "affinity", "{}", json_affinity,
        "JSON object shaped like a pod's `affinity`", spec_field="affinity",
    ),
    Setting(
        "TOLERATIONS", "tolerations", "[]", json_tolerations,
        "JSON list of pod tolerations", spec_field="tolerations",
    ),
    Setting(
        "IMAGE_PULL_SECRETS", "image_pull_secrets", "", secret_names,
        "`secret1;secret2`, names of Secrets in NAMESPACE",
        spec_field="imagePullSecrets", empty=(),
    ),
    Setting(
        "DAEMONSET_ANNOTATIONS", "daemonset_annotations", "{}", json_annotations,
        "JSON object of strings, put on the DaemonSet and its pods",
    ),
    Setting(
        "KIP_IMAGE", "kip_image", "registry.redhat.io/devspaces/imagepuller-rhel8:latest",
        check_image_reference,
        "image holding /bin/sh and a static /bin/sleep (copied by the init container)",
        spec_field="imagePullerImage",
    ),
    Setting(
        "READY_TIMEOUT", "ready_timeout_seconds", "5m", parse_ready_timeout,
        "bound on every wait (readiness, deletion)",
    ),
    Setting(
        "REFRESH_STRATEGY", "refresh_strategy", "rolling", choice(REFRESH_STRATEGIES),
        "rolling (each node's new pod ready before its old one goes) or recreate (the "
        "DaemonSet deleted and created again)",
    ),
    Setting(
        "REFRESH_MAX_SURGE", "refresh_max_surge", "10%", parse_max_surge,
        "nodes refreshed at once in a rolling refresh (the DaemonSet's maxSurge): a count or "
        "a percentage",
    ),
    Setting(
        "LOG_FORMAT", "log_format", "auto", choice(LOG_FORMATS),
        "auto (JSON unless on a terminal), json or console", scope="process", shown=None,
    ),
    Setting(
        "LOG_LEVEL", "log_level", "info", choice(LOG_LEVELS),
        "debug, info, warning or error", scope="process", shown=None,
    ),
    Setting(
        "KUBECONFIG", "kubeconfig", "", as_written,
        "kubeconfig file; empty: ~/.kube/config, then the in-cluster service account",
        scope="process", live=False, shown=None,
    ),
    Setting(
        "POD_NAMESPACE", "pod_namespace", "", as_written,
        "the namespace the puller runs in (downward API); a NAMESPACE elsewhere is warned of",
        scope="process", live=False, shown=None,
    ),
    Setting(
        "CONFIGMAP_NAME", "configmap_name", "", dns_subdomain,
        "the puller's own ConfigMap, read and watched for live edits; empty: none",
        scope="process", live=False,
    ),
    Setting(
        "IMAGES_FROM", "images_from", "", list_urls,
        "URLs of `external_images.txt` lists whose images are added to IMAGES", empty=(),
    ),
    Setting(
        "IMAGES_FROM_CA_BUNDLE", "images_from_ca_bundle", "", check_ca_bundle,
        "PEM certificates (the text, or a file's path) trusted for https lists",
        shown=_is_given,
    ),
    Setting(
        "IMAGES_FROM_TIMEOUT", "images_from_timeout_seconds", "10s", parse_images_from_timeout,
        "bound on reading one list",
    ),
    Setting(
        "IMAGES_FROM_MAX_IMAGES", "images_from_max_images", "100", parse_max_images,
        "at most this many images from all lists together",
    ),
    Setting(
        "IMAGES_FROM_MAX_BYTES", "images_from_max_bytes", "1Mi", parse_max_bytes,
        "at most this many bytes per list",
    ),
    # Whoever may edit the ConfigMap sets IMAGES_FROM; the hosts it may name are set in the
    # Deployment, where a ConfigMap edit cannot widen them.
    Setting(
        "IMAGES_FROM_HOSTS", "images_from_hosts", "", parse_images_from_hosts,
        "the only hosts lists are read from (and redirected to); empty: any host",
        scope="process", live=False, empty=(),
    ),
    # The port the probes and Prometheus reach is bound once, at start.
    Setting(
        "METRICS_PORT", "metrics_port", "8080", parse_port,
        "port of /metrics, /healthz and /readyz; 0 turns them off", scope="process", live=False,
    ),
    Setting(
        "METRICS_HOST", "metrics_host", "", parse_listen_address,
        "the address the endpoints listen on; empty: every interface",
        scope="process", live=False, empty="",
    ),
    Setting(
        "HEALTHZ_STUCK_AFTER", "healthz_stuck_after_seconds", "3m", parse_stuck_after,
        "/healthz fails when a look has heard nothing from the API for this long",
        scope="process", live=False,
    ),
)  # fmt: skip

BY_VARIABLE: Mapping[str, Setting] = {setting.variable: setting for setting in TABLE}
BY_ATTRIBUTE: Mapping[str, Setting] = {setting.attribute: setting for setting in TABLE}


def default_of(attribute: str) -> Any:
    """The default value of the setting behind a Config attribute, parsed from the table."""
    return BY_ATTRIBUTE[attribute].default_value


# Every variable load_config reads (a key of the ConfigMap that is none of these is not a setting).
SETTINGS = frozenset(BY_VARIABLE)

# This replica's identity in the operator's Lease, set by the Deployment: the process's own,
# read by the operator's settings and never a puller setting.
POD_NAME = "POD_NAME"

# Variables that describe the controller's process rather than the DaemonSet: read from the
# environment only, never from a live edit of the ConfigMap. The Deployment sets them with
# `env:`, which wins over the ConfigMap's `envFrom` in the pod as well.
ENV_ONLY_VARIABLES = frozenset({s.variable for s in TABLE if not s.live} | {POD_NAME})

# The resource's spec fields, each a puller setting's.
BY_SPEC_FIELD: Mapping[str, Setting] = {
    s.spec_field: s for s in TABLE if s.spec_field is not None and s.scope == "puller"
}

# Defaults other modules need on their own (`images` options, status lookups, health).
DEFAULT_NAMESPACE: str = BY_VARIABLE["NAMESPACE"].default
DEFAULT_KIP_IMAGE: str = BY_VARIABLE["KIP_IMAGE"].default
DEFAULT_IMAGES_FROM_TIMEOUT: str = BY_VARIABLE["IMAGES_FROM_TIMEOUT"].default
DEFAULT_IMAGES_FROM_TIMEOUT_SECONDS: float = default_of("images_from_timeout_seconds")
DEFAULT_IMAGES_FROM_MAX_IMAGES: int = default_of("images_from_max_images")
DEFAULT_IMAGES_FROM_MAX_BYTES: str = BY_VARIABLE["IMAGES_FROM_MAX_BYTES"].default
DEFAULT_IMAGES_FROM_MAX_BYTES_VALUE: int = default_of("images_from_max_bytes")
DEFAULT_HEALTHZ_STUCK_AFTER_SECONDS: float = default_of("healthz_stuck_after_seconds")
