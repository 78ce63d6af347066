"""The puller's configuration: every setting of ``settings.TABLE`` read, parsed and validated
here, once, from the environment and ConfigMap (``load_config``) or from a resource's spec
(``read_config``, called by ``resource``).

No other module reads ``os.environ``. Reading collects *every* problem before it raises, so an
administrator fixing a ConfigMap sees all mistakes in one go instead of one per pod restart.
Nothing is silently dropped: an entry that cannot be understood is an error. Each problem is
named in its reader's words: ``IMAGES`` for the ConfigMap, ``spec.images`` for a resource.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

from imagepuller.imageparsers import IMAGES_FORM, CachedImage, host_allowed
from imagepuller.settings import BY_ATTRIBUTE, POD_NAME, TABLE, default_of
from imagepuller.valueparsers import (
    Problem,
    ValueProblems,
    dns_label,
    named,
    namespace_list,
    quantity_value,
    show,
    show_all,
)


class ConfigError(ValueError):
    """The configuration is invalid; ``problems`` lists every reason, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "invalid configuration:\n" + "\n".join(f"  - {problem}" for problem in problems)
        )


def _default(attribute: str) -> Any:
    """A Config field's default, taken from the table (a fresh value each time)."""
    return field(default_factory=partial(default_of, attribute))


@dataclass(frozen=True)
class Config:
    """Validated settings; each attribute is a row of ``settings.TABLE``, which names its
    variable, default and meaning."""

    images: tuple[CachedImage, ...]
    caching_interval_hours: float = _default("caching_interval_hours")
    memory_request: str = _default("memory_request")
    memory_limit: str = _default("memory_limit")
    cpu_request: str = _default("cpu_request")
    cpu_limit: str = _default("cpu_limit")
    daemonset_name: str = _default("daemonset_name")
    deployment_name: str = _default("deployment_name")
    namespace: str = _default("namespace")
    node_selector: Mapping[str, str] = _default("node_selector")
    affinity: Mapping[str, Any] = _default("affinity")
    tolerations: tuple[Mapping[str, Any], ...] = _default("tolerations")
    image_pull_secrets: tuple[str, ...] = _default("image_pull_secrets")
    daemonset_annotations: Mapping[str, str] = _default("daemonset_annotations")
    kip_image: str = _default("kip_image")
    ready_timeout_seconds: float = _default("ready_timeout_seconds")
    refresh_strategy: str = _default("refresh_strategy")
    refresh_max_surge: int | str = _default("refresh_max_surge")
    log_format: str = _default("log_format")
    log_level: str = _default("log_level")
    kubeconfig: str | None = _default("kubeconfig")
    pod_namespace: str | None = _default("pod_namespace")
    configmap_name: str | None = _default("configmap_name")
    images_from: tuple[str, ...] = _default("images_from")
    images_from_ca_bundle: str | None = _default("images_from_ca_bundle")
    images_from_timeout_seconds: float = _default("images_from_timeout_seconds")
    images_from_max_images: int = _default("images_from_max_images")
    images_from_max_bytes: int = _default("images_from_max_bytes")
    images_from_hosts: tuple[str, ...] = _default("images_from_hosts")
    metrics_port: int = _default("metrics_port")
    metrics_host: str = _default("metrics_host")
    healthz_stuck_after_seconds: float = _default("healthz_stuck_after_seconds")

    @property
    def caching_interval_seconds(self) -> float:
        return self.caching_interval_hours * 3600.0

    def summary(self) -> dict[str, Any]:
        """The effective settings, for the one start-up log line and `imagepuller check`."""
        return {
            setting.attribute: setting.shown(getattr(self, setting.attribute))
            for setting in TABLE
            if setting.shown is not None
        }


def memory_limit_bytes(config: Config) -> Decimal:
    return quantity_value(config.memory_limit)


def _blank(raw: str | None) -> bool:
    return raw is None or raw.strip() == ""


class Problems:
    """Collects problems; ``get`` parses one given value and records failure instead of
    raising. ``labels`` names each key as the reader's source does (the key itself if absent)."""

    def __init__(self, given: Mapping[str, str | None], labels: Mapping[str, str] | None = None):
        self.given = given
        self.labels = labels or {}
        self.items: list[str] = []
        self.failed: set[str] = set()  # keys whose value could not be used

    def label(self, key: str) -> str:
        return self.labels.get(key, key)

    def add(self, key: str, value: str, problem: Problem) -> None:
        self.items.append(named(self.label(key), value, problem))
        self.failed.add(key)

    def get(self, key: str, default: Any, parse: Callable[[str], Any]) -> Any:
        raw = self.given.get(key)
        if raw is None or _blank(raw):
            return default
        try:
            return parse(raw.strip())
        except ValueProblems as err:
            for problem in err.problems:
                self.add(key, raw, problem)
            return default
        except ValueError as err:
            self.add(key, raw, Problem(str(err)))
            return default


# What each attribute is called in the environment, for its problems.
_VARIABLES = {setting.attribute: setting.variable for setting in TABLE}


def load_config(env: Mapping[str, str]) -> Config:
    """Build a ``Config`` from ``env`` (normally ``os.environ``); raise ``ConfigError``."""
    given = {setting.attribute: env.get(setting.variable) for setting in TABLE}
    return read_config(given, _VARIABLES)


def read_config(given: Mapping[str, str | None], labels: Mapping[str, str]) -> Config:
    """A ``Config`` from the text given for each attribute (absent: the default). ``labels``
    holds the name of every attribute the source can set, as the source calls it; problems
    use it, and cross-checks mention only settings the source has."""
    problems = Problems(given, labels)
    _check_required(given, problems)  # first: nothing else matters much without images
    values = {s.attribute: problems.get(s.attribute, s.default_value, s.parse) for s in TABLE}
    _check_requests_within_limits(values, problems)
    _check_list_hosts(values["images_from"], values["images_from_hosts"], problems)
    if problems.items:
        raise ConfigError(problems.items)
    return Config(**values)


def _check_required(given: Mapping[str, str | None], problems: Problems) -> None:
    # A given IMAGES_FROM that is wrong is reported as such, not as a missing IMAGES too.
    if not _blank(given.get("images_from")):
        return
    for setting in TABLE:
        if setting.required and _blank(given.get(setting.attribute)):
            alternative = (
                f" (or {problems.labels['images_from']})"
                if "images_from" in problems.labels
                else ""
            )
            problems.items.append(
                f"{problems.label(setting.attribute)} is required{alternative}: {IMAGES_FORM}"
            )


def _check_requests_within_limits(values: Mapping[str, Any], problems: Problems) -> None:
    for request, limit in (("memory_request", "memory_limit"), ("cpu_request", "cpu_limit")):
        if problems.failed & {request, limit}:
            continue  # already reported; comparing against a default would only confuse
        if quantity_value(values[request]) > quantity_value(values[limit]):
            problems.items.append(
                f"{problems.label(request)}={show(values[request])} is more than "
                f"{problems.label(limit)}={show(values[limit])}: "
                "the request must not exceed the limit"
            )


def _check_list_hosts(urls: tuple[str, ...], hosts: tuple[str, ...], problems: Problems) -> None:
    refused = [url for url in urls if not host_allowed(url, hosts)]
    if refused:
        lists, allowed = problems.label("images_from"), problems.label("images_from_hosts")
        problems.items.append(
            f"{lists} lists {show_all(refused)} are on hosts {allowed} does not "
            f"allow ({', '.join(hosts)}): add their hosts there, or take them out of {lists}"
        )


def parse_images(raw: str) -> tuple[CachedImage, ...]:
    """An IMAGES value on its own (``imagepuller images --merge``); raises ConfigError."""
    images = BY_ATTRIBUTE["images"]
    problems = Problems({"images": raw}, {"images": images.variable})
    if _blank(raw):
        problems.items.append(f"{images.variable} is required: {IMAGES_FORM}")
    value: tuple[CachedImage, ...] = problems.get("images", (), images.parse)
    if problems.items:
        raise ConfigError(problems.items)
    return value


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
    metrics_port: int = _default("metrics_port")
    metrics_host: str = _default("metrics_host")
    healthz_stuck_after_seconds: float = _default("healthz_stuck_after_seconds")
    log_format: str = _default("log_format")
    log_level: str = _default("log_level")
    kubeconfig: str | None = _default("kubeconfig")


def load_operator_settings(env: Mapping[str, str]) -> OperatorSettings:
    """Every problem at once, as ``load_config`` does; raises ConfigError."""
    problems = Problems(env)
    # The process settings it shares with `run` (its fields named as a process row's
    # attribute) are read from those rows.
    shared = {
        field.name: problems.get(setting.variable, setting.default_value, setting.parse)
        for field in dataclasses.fields(OperatorSettings)
        if (setting := BY_ATTRIBUTE.get(field.name)) is not None and setting.scope == "process"
    }
    settings = OperatorSettings(
        watch_namespaces=problems.get("WATCH_NAMESPACES", (), namespace_list),
        namespace=problems.get("POD_NAMESPACE", DEFAULT_OPERATOR_NAMESPACE, dns_label),
        pod_name=env.get(POD_NAME) or None,
        **shared,
    )
    if problems.items:
        raise ConfigError(problems.items)
    return settings
