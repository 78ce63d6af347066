"""The shape of a pod's ``affinity`` (Kubernetes 1.37 core/v1): field names and JSON types.

Checked without a cluster, so `imagepuller check` catches a misspelt field or a string where a
list belongs; the values (operators, an empty list of terms) are left to the API's dry run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeAlias

_INT32 = (-(2**31), 2**31 - 1)
_SHOWN_MAX = 60

# A shape is "string", "int32", a dict of field name -> shape (a JSON object with those fields),
# a _ListOf or a _MapOf. The API's dry run still judges the values.


@dataclass(frozen=True)
class _ListOf:
    item: _Shape


@dataclass(frozen=True)
class _MapOf:
    value: _Shape


_Shape: TypeAlias = "str | dict[str, _Shape] | _ListOf | _MapOf"

_STRINGS = _ListOf("string")
# NodeSelectorRequirement and LabelSelectorRequirement have the same fields.
_REQUIREMENTS = _ListOf({"key": "string", "operator": "string", "values": _STRINGS})
_NODE_SELECTOR_TERM: dict[str, _Shape] = {
    "matchExpressions": _REQUIREMENTS,
    "matchFields": _REQUIREMENTS,
}
_LABEL_SELECTOR: dict[str, _Shape] = {
    "matchLabels": _MapOf("string"),
    "matchExpressions": _REQUIREMENTS,
}
_POD_AFFINITY_TERM: dict[str, _Shape] = {
    "labelSelector": _LABEL_SELECTOR,
    "namespaceSelector": _LABEL_SELECTOR,
    "namespaces": _STRINGS,
    "topologyKey": "string",
    "matchLabelKeys": _STRINGS,
    "mismatchLabelKeys": _STRINGS,
}
_POD_AFFINITY: dict[str, _Shape] = {
    "requiredDuringSchedulingIgnoredDuringExecution": _ListOf(_POD_AFFINITY_TERM),
    "preferredDuringSchedulingIgnoredDuringExecution": _ListOf(
        {"weight": "int32", "podAffinityTerm": _POD_AFFINITY_TERM}
    ),
}
_AFFINITY: dict[str, _Shape] = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": _ListOf(_NODE_SELECTOR_TERM)
        },
        "preferredDuringSchedulingIgnoredDuringExecution": _ListOf(
            {"weight": "int32", "preference": _NODE_SELECTOR_TERM}
        ),
    },
    "podAffinity": _POD_AFFINITY,
    "podAntiAffinity": _POD_AFFINITY,
}
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _child_path(path: str, key: str) -> str:
    if not _PLAIN_KEY.fullmatch(key):
        shown = repr(key) if len(key) <= _SHOWN_MAX else f"{key[:_SHOWN_MAX]!r}..."
        return f"{path}[{shown}]"
    return f"{path}.{key}" if path else key


def _shape_problems(value: Any, shape: _Shape, path: str) -> list[str]:
    """Every unknown field and wrong JSON type in ``value``, each with its JSON path."""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        problems = []
        for key, child in value.items():
            where = _child_path(path, key)
            if key not in shape:
                problems.append(
                    f"{where}: unknown field (expected one of {', '.join(sorted(shape))})"
                )
            elif child is not None:  # null is an unset field, as the API decodes it
                problems.extend(_shape_problems(child, shape[key], where))
        return problems
    if isinstance(shape, _ListOf):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [
            problem
            for index, child in enumerate(value)
            for problem in _shape_problems(child, shape.item, f"{path}[{index}]")
        ]
    if isinstance(shape, _MapOf):
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        return [
            problem
            for key, child in value.items()
            for problem in _shape_problems(child, shape.value, _child_path(path, key))
        ]
    if shape == "int32":
        low, high = _INT32
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return [f"{path}: expected an integer (32-bit)"]
        return []
    if not isinstance(value, str):
        return [f"{path}: expected a string"]
    return []


FIELDS = tuple(sorted(_AFFINITY))


def affinity_problems(value: dict[str, Any]) -> list[str]:
    """Every unknown field and wrong JSON type in an affinity, each with its JSON path."""
    return _shape_problems(value, _AFFINITY, "")
