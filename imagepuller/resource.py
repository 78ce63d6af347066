"""The `KubernetesImagePuller` resource's spec read as settings: one table, the same validators.

Every spec field is a string, as in the community operator's CRD (the Che operator writes them
that way), and maps to one setting of the ConfigMap's table; ``load_config`` judges them, so a
resource and a ConfigMap accept and refuse exactly the same values. Problems are reported in
the resource's own words (``spec.cachingMemoryLimit``, not ``CACHING_MEMORY_LIMIT``).

``NAMESPACE`` is always the resource's own namespace: a puller never reaches into another one.
``configMapName`` and ``deploymentName`` are accepted and unused (the Che operator fills them
for the community operator, which created a ConfigMap and a Deployment per resource; this
operator keeps the DaemonSet itself). ``imagePullerImage`` is the init image (``KIP_IMAGE``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from imagepuller.config import Config, ConfigError, load_config
from imagepuller.policy import ResourcePolicy

GROUP = "che.eclipse.org"
VERSION = "v1alpha1"
KIND = "KubernetesImagePuller"
PLURAL = "kubernetesimagepullers"

# spec field -> setting. The casing of cachingCPU* is the community operator's.
SPEC_SETTINGS = {
    "images": "IMAGES",
    "daemonsetName": "DAEMONSET_NAME",
    "cachingIntervalHours": "CACHING_INTERVAL_HOURS",
    "cachingMemoryRequest": "CACHING_MEMORY_REQUEST",
    "cachingMemoryLimit": "CACHING_MEMORY_LIMIT",
    "cachingCPURequest": "CACHING_CPU_REQUEST",
    "cachingCPULimit": "CACHING_CPU_LIMIT",
    "nodeSelector": "NODE_SELECTOR",
    "affinity": "AFFINITY",
    "tolerations": "TOLERATIONS",
    "imagePullSecrets": "IMAGE_PULL_SECRETS",
    "imagePullerImage": "KIP_IMAGE",
}
# Filled by the Che operator for the community operator's own objects; nothing to do here.
ACCEPTED_UNUSED = frozenset({"configMapName", "deploymentName"})
SPEC_FIELDS = frozenset(SPEC_SETTINGS) | ACCEPTED_UNUSED

_SETTING_NAMES = re.compile(
    r"\b("
    + "|".join(sorted(map(re.escape, SPEC_SETTINGS.values()), key=len, reverse=True))
    + r")\b"
)
_FIELD_OF = {setting: field for field, setting in SPEC_SETTINGS.items()}


def settings_from_spec(spec: Mapping[str, Any], namespace: str) -> dict[str, str]:
    """The environment ``load_config`` reads for this spec (string fields only)."""
    environment = {"NAMESPACE": namespace}
    for field, setting in SPEC_SETTINGS.items():
        value = spec.get(field)
        if isinstance(value, str):
            environment[setting] = value
    return environment


def _type_problems(spec: Mapping[str, Any]) -> list[str]:
    """Fields that are not strings: the schema forbids them, but a resource stored before the
    schema was (or one read from a file) may have them; never guess what `2` meant."""
    return [
        f"spec.{field}={value!r}: expected a string (every spec field is one, JSON included)"
        for field in sorted(SPEC_FIELDS)
        if (value := spec.get(field)) is not None and not isinstance(value, str)
    ]


def in_spec_words(problem: str) -> str:
    """A problem of ``load_config`` with each setting's name replaced by its spec field."""
    problem = problem.replace("IMAGES is required (or IMAGES_FROM)", "IMAGES is required")
    return _SETTING_NAMES.sub(lambda match: f"spec.{_FIELD_OF[match.group(1)]}", problem)


def config_from_resource(
    resource: Mapping[str, Any], policy: ResourcePolicy | None = None
) -> Config:
    """The configuration a resource asks for; ConfigError lists every problem in spec words,
    those of the operator's ``policy`` (what a resource may ask) included."""
    meta = resource.get("metadata") or {}
    spec = resource.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise ConfigError(["spec: expected an object of string fields"])
    problems = _type_problems(spec)
    try:
        config = load_config(settings_from_spec(spec, str(meta.get("namespace") or "")))
    except ConfigError as err:
        problems += [in_spec_words(problem) for problem in err.problems]
    else:
        if policy is not None:
            problems += policy.problems(config)
    if problems:
        raise ConfigError(problems)
    return config
