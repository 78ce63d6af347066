"""The `KubernetesImagePuller` resource's spec read as settings: one table, the same parsers.

Every spec field is a string, as in the community operator's CRD (the Che operator writes them
that way), and maps to one puller setting of ``settings.TABLE``; ``read_config`` judges them, so a
resource and a ConfigMap accept and refuse exactly the same values. Problems are reported in
the resource's own words (``spec.cachingMemoryLimit``, not ``CACHING_MEMORY_LIMIT``): the
reader names each field it gives, and the parsers know no names.

``NAMESPACE`` is always the resource's own namespace: a puller never reaches into another one.
``configMapName`` and ``deploymentName`` are accepted and unused (the Che operator fills them
for the community operator, which created a ConfigMap and a Deployment per resource; this
operator keeps the DaemonSet itself). ``imagePullerImage`` is the init image (``KIP_IMAGE``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imagepuller import objects
from imagepuller.config import Config, ConfigError, read_config
from imagepuller.policy import ResourcePolicy
from imagepuller.settings import BY_SPEC_FIELD, BY_VARIABLE

GROUP = "che.eclipse.org"
VERSION = "v1alpha1"
KIND = "KubernetesImagePuller"
PLURAL = "kubernetesimagepullers"

# spec field -> the variable of its setting (settings.TABLE holds the pairs).
SPEC_SETTINGS = {field: setting.variable for field, setting in BY_SPEC_FIELD.items()}
# Filled by the Che operator for the community operator's own objects; nothing to do here.
ACCEPTED_UNUSED = frozenset({"configMapName", "deploymentName"})
SPEC_FIELDS = frozenset(SPEC_SETTINGS) | ACCEPTED_UNUSED

_NAMESPACE = BY_VARIABLE["NAMESPACE"].attribute
# What each attribute a resource can set is called there, for its problems.
_LABELS = {
    _NAMESPACE: "metadata.namespace",
    **{setting.attribute: f"spec.{field}" for field, setting in BY_SPEC_FIELD.items()},
}


def _type_problems(spec: Mapping[str, Any]) -> list[str]:
    """Fields that are not strings: the schema forbids them, but a resource stored before the
    schema was (or one read from a file) may have them; never guess what `2` meant."""
    return [
        f"spec.{field}={value!r}: expected a string (every spec field is one, JSON included)"
        for field in sorted(SPEC_FIELDS)
        if (value := spec.get(field)) is not None and not isinstance(value, str)
    ]


def config_from_resource(
    resource: Mapping[str, Any], policy: ResourcePolicy | None = None
) -> Config:
    """The configuration a resource asks for; ConfigError lists every problem in spec words,
    those of the operator's ``policy`` (what a resource may ask) included."""
    spec = resource.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise ConfigError(["spec: expected an object of string fields"])
    problems = _type_problems(spec)
    given: dict[str, str | None] = {_NAMESPACE: str(objects.namespace(resource))}
    for field, setting in BY_SPEC_FIELD.items():
        value = spec.get(field)
        given[setting.attribute] = value if isinstance(value, str) else None
    try:
        config = read_config(given, _LABELS)
    except ConfigError as err:
        problems += err.problems
    else:
        if policy is not None:
            problems += policy.problems(config)
    if problems:
        raise ConfigError(problems)
    return config
