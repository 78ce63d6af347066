"""A tiny emulation of `oc process` for OpenShift Template files (oc is not available here).

    from tests.templates import process_template
    objects = process_template("manifests/openshift/app.yaml", {"IMAGE_TAG": "v1"})

What it does, like `oc process -f FILE -p NAME=value ...`:
- parameter defaults (`value`), overridden by `params`;
- an error for a parameter the template does not declare (`oc`: "unknown parameter name");
- an error for a `required` parameter that ends up empty;
- `${NAME}` substituted inside every string value (not in mapping keys), any number of times;
- `${{NAME}}`: when it is the *whole* string, the value is parsed as JSON/YAML and replaces the
  string with that non-string value (number, bool, object...); inside a longer string it is
  substituted as text;
- references to undeclared names are left as they are (as oc does);
- the template's `labels` are added to every object's `metadata.labels`.
`generate` expressions are not supported (none of our templates uses them): such a parameter
without a value is an error here.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_API_VERSIONS = {"template.openshift.io/v1", "v1"}

_REF = re.compile(r"\$\{\{([a-zA-Z0-9_]+)\}\}|\$\{([a-zA-Z0-9_]+)\}")
_WHOLE_NONSTRING = re.compile(r"^\$\{\{([a-zA-Z0-9_]+)\}\}$")


class TemplateError(ValueError):
    """The template or the parameters are invalid (where `oc process` would fail)."""


def load_template(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    if len(docs) != 1:
        raise TemplateError(f"{path}: expected exactly one YAML document, found {len(docs)}")
    tpl = docs[0]
    if tpl.get("kind") != "Template" or tpl.get("apiVersion") not in TEMPLATE_API_VERSIONS:
        raise TemplateError(f"{path}: not an OpenShift Template")
    return tpl


def parameter_defaults(path: str | Path) -> dict[str, str]:
    """Every declared parameter with its default value ("" when it has none)."""
    return {p["name"]: p.get("value", "") for p in load_template(path).get("parameters", [])}


def _resolve_params(tpl: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, str]:
    declared: dict[str, dict[str, Any]] = {}
    for i, p in enumerate(tpl.get("parameters") or []):
        name = p.get("name")
        if not name or not re.fullmatch(r"[a-zA-Z0-9_]+", name):
            raise TemplateError(f"template.parameters[{i}].name: invalid name {name!r}")
        if name in declared:
            raise TemplateError(f"template.parameters[{i}].name: duplicate parameter {name!r}")
        value = p.get("value", "")
        if not isinstance(value, str):
            # oc rejects a non-string default at decode time.
            raise TemplateError(f"parameter {name}: value must be a string, got {value!r}")
        declared[name] = p

    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"unknown parameter name {', '.join(unknown)!r}")

    values: dict[str, str] = {}
    for name, p in declared.items():
        if name in overrides:
            value = overrides[name]
            if not isinstance(value, str):
                raise TemplateError(f"parameter {name}: override must be a string, got {value!r}")
        else:
            value = p.get("value", "")
            if not value and p.get("generate"):
                raise TemplateError(f"parameter {name}: `generate` is not supported here")
        if p.get("required") and value == "":
            raise TemplateError(f"parameter {name} is required and must be specified")
        values[name] = value
    return values


def _substitute(node: Any, values: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, values) for v in node]
    if not isinstance(node, str):
        return node

    whole = _WHOLE_NONSTRING.match(node)
    if whole and whole.group(1) in values:
        raw = values[whole.group(1)]
        try:
            return json.loads(raw)
        except ValueError:
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise TemplateError(f"${{{{{whole.group(1)}}}}}: not JSON/YAML: {raw!r}") from exc

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return values[name] if name in values else m.group(0)

    return _REF.sub(repl, node)


def process_template(path: str | Path, params: Mapping[str, str] | None = None) -> list[dict]:
    """Return the objects of the template at `path` with `params` applied (like `oc process`)."""
    tpl = load_template(path)
    values = _resolve_params(tpl, dict(params or {}))
    labels = tpl.get("labels") or {}
    out: list[dict] = []
    for i, obj in enumerate(tpl.get("objects") or []):
        if not isinstance(obj, dict) or not obj.get("kind") or not obj.get("apiVersion"):
            raise TemplateError(f"{path}: objects[{i}] has no kind/apiVersion")
        obj = _substitute(copy.deepcopy(obj), values)
        if labels:
            meta = obj.setdefault("metadata", {})
            meta["labels"] = {**_substitute(dict(labels), values), **(meta.get("labels") or {})}
        out.append(obj)
    return out
