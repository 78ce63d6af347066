"""Parsers of the JSON settings (node selector, affinity, tolerations, annotations): strict
JSON that every later step (copy, YAML, the API) can handle, checked as the API checks it."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from imagepuller.affinity import FIELDS as AFFINITY_FIELDS
from imagepuller.affinity import affinity_problems
from imagepuller.valueparsers import ValueProblems, is_dns_subdomain, show, show_all, show_json

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

_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
_TOLERATION_STRINGS = ("key", "operator", "value", "effect")

# The API treats an empty operator as Equal.
_TOLERATION_OPERATORS = ("Exists", "Equal", "")
_TAINT_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")


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
        raise ValueError(f"the key {show(str(err))} is given twice; {expected}") from None
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


def _json_string_map(
    raw: str, expected: str, key_ok: Callable[[str], bool], key_form: str
) -> dict[str, str]:
    value = _json(raw, expected)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError(expected)
    bad_keys = [key for key in value if not key_ok(key)]
    if bad_keys:
        raise ValueError(f"invalid keys {show_all(bad_keys)}: {key_form}")
    return value


_KEY_FORM = (
    "a key is [prefix/]name, name at most 63 letters, digits, '-', '_' or '.', starting and "
    "ending with a letter or digit, prefix a DNS-1123 name"
)

_LABEL_KEY_FORM = _KEY_FORM + " (lower case)"

_ANNOTATION_KEY_FORM = _KEY_FORM + " (upper or lower case)"


def json_labels(raw: str) -> dict[str, str]:
    value = _json_string_map(
        raw,
        'expected a JSON object of node labels, such as {"key": "value"}',
        is_qualified_name,
        _LABEL_KEY_FORM,
    )
    bad = [v for v in value.values() if not is_label_value(v)]
    if bad:
        raise ValueError(
            f"invalid label values {show_all(bad)}: at most {LABEL_VALUE_MAX} letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )
    return value


def json_annotations(raw: str) -> dict[str, str]:
    value = _json_string_map(
        raw,
        'expected a JSON object of strings, such as {"key": "value"}',
        _is_annotation_key,
        _ANNOTATION_KEY_FORM,
    )
    reserved = [key for key in value if _is_reserved_annotation(key)]
    if reserved:
        raise ValueError(
            f"the keys {show_all(reserved)} are reserved: the puller keeps its own state in "
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


def is_qualified_name(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and not is_dns_subdomain(prefix):
        return False
    return len(name) <= 63 and bool(_QUALIFIED_NAME.fullmatch(name))


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _is_annotation_key(key: str) -> bool:
    # The API checks annotation keys case-insensitively (ValidateAnnotations lower-cases them);
    # only ASCII is lowered here, so no exotic character passes that Go would lower otherwise.
    return is_qualified_name(key.translate(_ASCII_LOWER))


def is_label_value(value: str) -> bool:
    return len(value) <= LABEL_VALUE_MAX and bool(_LABEL_VALUE.fullmatch(value))


def json_affinity(raw: str) -> dict[str, Any]:
    expected = "expected a JSON object shaped like a pod's affinity, with keys among " + ", ".join(
        AFFINITY_FIELDS
    )
    value = _json(raw, expected)
    if not isinstance(value, dict):
        raise ValueError(expected)
    problems = affinity_problems(value)
    if problems:
        raise ValueProblems(problems)
    return value


def json_tolerations(raw: str) -> tuple[dict[str, Any], ...]:
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
    problems = [f"unknown keys {show_all(unknown)}"] if unknown else []
    # null is an unset field, as the API decodes it; another JSON type is a problem of its own
    # (and the field is then not checked further: None below).
    fields: dict[str, str | None] = {}
    for name in _TOLERATION_STRINGS:
        given = toleration.get(name)
        fields[name] = "" if given is None else given if isinstance(given, str) else None
    key, operator, value, effect = (fields[name] for name in _TOLERATION_STRINGS)
    if key is None:
        problems.append(
            f"key {show_json(toleration['key'])} is not a valid label key (expected a string)"
        )
    elif key and not is_qualified_name(key):
        problems.append(f"key {show(key)} is not a valid label key")
    if operator is None or operator not in _TOLERATION_OPERATORS:
        shown = show_json(toleration["operator"])
        problems.append(f"operator must be Exists or Equal (not {shown})")
    elif operator == "Exists":
        if value:
            problems.append("operator Exists takes no value")
    else:  # Equal, or empty which the API takes for Equal
        if key == "":
            problems.append("an empty key (all taints) needs operator Exists")
        if value is not None and not is_label_value(value):
            problems.append(f"value {show(value)} is not a valid label value")
    if value is None:
        shown = show_json(toleration["value"])
        problems.append(f"value {shown} is not a valid label value (expected a string)")
    if effect is None or effect not in _TAINT_EFFECTS:
        shown = show_json(toleration["effect"])
        problems.append(
            f"effect must be NoSchedule, PreferNoSchedule, NoExecute or empty (not {shown})"
        )
    seconds = toleration.get("tolerationSeconds")
    if seconds is not None:
        low, high = _INT64
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            problems.append(f"tolerationSeconds must be a whole number (not {show_json(seconds)})")
        elif not low <= seconds <= high:
            problems.append("tolerationSeconds is out of range: at most a 64-bit whole number")
        elif effect is not None and effect != "NoExecute":
            problems.append("tolerationSeconds needs effect NoExecute")
    return problems
