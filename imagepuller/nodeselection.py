"""Which nodes a DaemonSet's pods are meant for, read as the DaemonSet controller reads it.

Pure: a pod template's spec and a node, as the API returns them, go in; why no pod of that
template would run on the node (its node selector, its required node affinity, a taint it does
not tolerate) comes out, or None. The affinity's terms are matched as the scheduler matches
them, integers included, so ``imagepuller status`` does not call a node selected that the
scheduler would not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from imagepuller import objects

# The DaemonSet controller adds tolerations for these to every pod it creates (not-ready,
# unreachable, disk-pressure, memory-pressure, pid-pressure, unschedulable, ...).
_DAEMON_TOLERATED_PREFIX = "node.kubernetes.io/"
_BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")


def why_not_selected(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> str | None:
    """Why the DaemonSet controller would not run a pod of ``pod_spec`` on ``node``: its node
    selector, its required node affinity or a taint it does not tolerate; None if it would."""
    labels = objects.labels_of(node)
    reasons = [
        f"selector {key}={value}"
        for key, value in (pod_spec.get("nodeSelector") or {}).items()
        if labels.get(key) != value
    ]
    required = required_affinity(pod_spec)
    if required is not None:
        fields = {"metadata.name": objects.name(node)}
        terms = required.get("nodeSelectorTerms") or []
        # The terms are ORed; an empty list of terms, or an empty term, matches no node.
        if not any(_term_matches(term, labels, fields) for term in terms):
            reasons.append("affinity: no required node affinity term matches")
    tolerations = pod_spec.get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in _BLOCKING_EFFECTS and not _tolerated(taint, tolerations):
            value = f"={taint['value']}" if taint.get("value") else ""
            reasons.append(f"taint {taint.get('key', '')}{value}:{taint['effect']}")
    return "; ".join(reasons) or None


def required_affinity(pod_spec: Mapping[str, Any]) -> dict[str, Any] | None:
    node_affinity = (pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    return required if isinstance(required, dict) else None


def _term_matches(
    term: Mapping[str, Any], labels: Mapping[str, str], fields: Mapping[str, str]
) -> bool:
    expressions = term.get("matchExpressions") or []
    match_fields = term.get("matchFields") or []
    if not expressions and not match_fields:
        return False
    return all(_requirement_matches(r, labels) for r in expressions) and all(
        _requirement_matches(r, fields) for r in match_fields
    )


def _requirement_matches(requirement: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = requirement.get("key") or "", requirement.get("operator")
    values = [str(v) for v in requirement.get("values") or []]
    present, value = key in labels, labels.get(key)
    if operator == "In":
        return present and value in values
    if operator == "NotIn":
        return not present or value not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        have, bound = _api_integer(str(value)), _api_integer(values[0])
        if have is None or bound is None:
            return False  # the scheduler's reading: not a number, so no match
        return have > bound if operator == "Gt" else have < bound
    return False  # an operator the API would have refused


_INT64 = range(-(2**63), 2**63)


def _api_integer(text: str) -> int | None:
    """``text`` as Go's strconv.ParseInt(text, 10, 64) reads it, as the scheduler does for Gt
    and Lt, or None. Python's int() would take "1_0" (10), " 8", or "８" and "٨" (non-ASCII
    digits), and any size: none of them is a number there."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    number = int(text)
    return number if number in _INT64 else None


def _tolerated(taint: Mapping[str, Any], tolerations: Iterable[Mapping[str, Any]]) -> bool:
    key = taint.get("key") or ""
    if key.startswith(_DAEMON_TOLERATED_PREFIX):
        return True
    for toleration in tolerations:
        effect = toleration.get("effect") or ""
        if effect and effect != taint.get("effect"):
            continue
        wanted = toleration.get("key") or ""
        if (toleration.get("operator") or "Equal") == "Exists":
            if not wanted or wanted == key:  # no key: tolerates every taint
                return True
        elif wanted == key and (toleration.get("value") or "") == (taint.get("value") or ""):
            return True
    return False
