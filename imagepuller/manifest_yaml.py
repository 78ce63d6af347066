"""YAML for manifests that every Kubernetes reader reads back as written.

PyYAML's ``safe_dump`` leaves a string unquoted whenever *its own* YAML 1.1 resolver would read
it back as a string. Other readers disagree on some of those: kubectl (go-yaml, via
sigs.k8s.io/yaml) and YAML 1.2 readers take ``1e3``, ``1e-1``, ``+.5`` or ``0o17`` as numbers,
and YAML 1.1 readers take ``y``/``n`` as booleans. ``dump_manifest`` quotes every string that
any of them could take for a number, boolean, null or timestamp. The rule is deliberately
broad (``1.0.0`` is quoted too): a needless quote costs nothing, a missing one changes a value.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_STR_TAG = "tag:yaml.org,2002:str"

# Compared case-insensitively: booleans and nulls of YAML 1.1 and 1.2 (and go-yaml's table),
# plus the 1.1 merge key and value indicator.
_SPECIAL_WORDS = frozenset(
    {"y", "n", "yes", "no", "true", "false", "on", "off", "null", "~", "", "<<", "="}
)

_NUMBER_OR_TIME_LIKE = re.compile(
    r"""
      [-+]? (?: [0-9] | \.[0-9] ) [0-9_.:eE+-]*   # 12, 1_000, 1e3, 1e-1, +.5, 12:30:00, 2001-12-14
    | [-+]? 0 [xob] .*                           # 0x1F, 0o17, 0b101: prefixed integers (any digits)
    | [-+]? \.? (?: inf | infinity | nan )       # .inf, -.Inf, .NaN, and bare forms
    | [0-9]{4} - [0-9]{1,2} - [0-9]{1,2} .*      # timestamps: 2001-12-14T21:59:43.10-05:00
    """,
    re.VERBOSE | re.IGNORECASE | re.DOTALL,
)


def needs_quotes(text: str) -> bool:
    """Whether some YAML 1.1 or 1.2 reader could read ``text``, unquoted, as a non-string."""
    return text.lower() in _SPECIAL_WORDS or _NUMBER_OR_TIME_LIKE.fullmatch(text) is not None


class ManifestDumper(yaml.SafeDumper):
    """A SafeDumper that quotes every string some reader could take for another type."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if needs_quotes(data):
        # The emitter falls back to double quotes if single quotes cannot hold the text.
        return dumper.represent_scalar(_STR_TAG, data, style="'")
    return dumper.represent_str(data)


ManifestDumper.add_representer(str, _represent_str)


def dump_manifest(manifest: Any) -> str:
    """``manifest`` as YAML, keys in their given order, every ambiguous string quoted."""
    return yaml.dump(manifest, Dumper=ManifestDumper, sort_keys=False)
