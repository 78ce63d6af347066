"""A `KubernetesImagePuller`'s status, as a pure function of one observation.

The operator gathers what one look saw (``Observation``: the resource's generation and stored
status, a name conflict or the spec's problems, the DaemonSet, its failures and what its pods
hold) and ``resource_status`` says what the status is. Nothing here reads the cluster, so every
case is a row of a table test (tests/unit/test_resource_status.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from imagepuller import objects
from imagepuller.apitime import format_time, whole_seconds
from imagepuller.daemonset import REFRESH_ANNOTATION, template_containers
from imagepuller.failures import Failure, failure_summary
from imagepuller.objects import rollout
from imagepuller.status import all_held

# At most this many failures are listed in a status (failuresTotal counts them all).
FAILURES_SHOWN = 20
# A condition's message is cut to this length (a failure's: failures.FAILURE_MESSAGE_MAX).
CONDITION_MESSAGE_MAX = 32768


@dataclass(frozen=True)
class Observation:
    """What one look saw of a resource and its puller."""

    generation: int  # the resource's metadata.generation
    stored: Mapping[str, Any]  # its status as stored now (conditions keep their times)
    # A DaemonSet name another resource (or object) holds, in words: nothing else is reported.
    conflict: str | None = None
    problems: Sequence[str] = ()  # the spec's problems, refused by us or by the API
    problem_reason: str = "InvalidSpec"  # or SpecNotChecked (the API could not say)
    applied_generation: int | None = None  # the generation that runs (None: ``generation``)
    observed_generation: int | None = None  # the newest looked at (None: ``applied``)
    daemonset: dict[str, Any] | None = None  # as last observed; None: not made yet
    current: bool = False  # the DaemonSet has this spec's template
    failures: Sequence[Failure] = ()  # as status.why_not_ready
    held_from_pods: int | None = None  # during a rollout: nodes whose pods hold every image
    kip_image: str = ""


def resource_status(seen: Observation, now: float) -> dict[str, Any]:
    """The status ``seen`` calls for; ``now`` (wall-clock seconds) dates a changed condition."""
    if seen.conflict is not None:
        return status_body(
            seen.stored,
            generation=seen.generation,
            conditions=[
                ("Ready", False, "NameConflict", seen.conflict),
                ("Progressing", False, "NameConflict", seen.conflict),
                ("Degraded", True, "NameConflict", seen.conflict),
            ],
            now=now,
        )
    problems = list(seen.problems)
    if seen.daemonset is None:
        reason, message = (
            ("InvalidSpec", "; ".join(problems)) if problems else ("Creating", "starting")
        )
        return status_body(
            seen.stored,
            generation=seen.generation,
            conditions=[
                ("Ready", False, reason, message),
                ("Progressing", not problems, reason, message),
                ("Degraded", bool(problems), reason, message),
            ],
            now=now,
        )
    daemonset = seen.daemonset
    applied = seen.generation if seen.applied_generation is None else seen.applied_generation
    observed = applied if seen.observed_generation is None else seen.observed_generation
    complete, rolled, desired = rollout(daemonset)
    holding = int(objects.daemonset_status(daemonset).get("numberAvailable") or 0)
    if not complete:
        # During a rollout numberAvailable counts the old pods too, and an old pod does not
        # hold an image the spec has just added: what the pods really hold counts.
        holding = min(holding, rolled if seen.held_from_pods is None else seen.held_from_pods)
    images = len(template_containers(daemonset))
    # Only a DaemonSet with this spec's template holds this spec's images.
    ready = seen.current and complete and desired > 0 and holding == desired
    if ready:
        ready_reason, ready_message = "AllImagesCached", all_held(images, holding, desired)
    elif not seen.current:
        ready_reason, ready_message = (
            "Updating",
            "the DaemonSet does not have this spec's template yet; updating it",
        )
    elif complete and desired == 0:
        ready_reason, ready_message = "NoNodesSelected", "no node matches the selection"
    else:
        ready_reason, ready_message = (
            "Pulling",
            f"{holding}/{desired} nodes hold every image; the rollout goes on",
        )
    if problems:
        degraded = (True, seen.problem_reason, "; ".join(problems))
    elif seen.failures:
        degraded = (True, "ImagesNotCached", failure_summary(seen.failures))
    else:
        degraded = (False, "AsExpected", "no failure reported")
    rolling = not (complete and seen.current)
    body = status_body(
        seen.stored,
        generation=observed,
        # What runs (Ready, Progressing) is the applied generation's; Degraded may be about a
        # newer one the API refused.
        condition_generations={"Ready": applied, "Progressing": applied},
        conditions=[
            ("Ready", ready, ready_reason, ready_message),
            ("Progressing", rolling, "RollingOut" if rolling else "Complete", ready_message),
            ("Degraded", *degraded),
        ],
        now=now,
    )
    body.update(
        imagePullerImage=seen.kip_image,
        nodes={"desired": desired, "ready": holding},
        images=images,
        failures=[f.status_entry() for f in seen.failures[:FAILURES_SHOWN]],
        failuresTotal=len(seen.failures),
    )
    refreshed = seen.stored.get("lastRefreshTime")
    if complete:
        template = daemonset["spec"]["template"]["metadata"].get("annotations") or {}
        refreshed = template.get(REFRESH_ANNOTATION) or refreshed
    if refreshed:
        body["lastRefreshTime"] = refreshed
    return body


def status_body(
    stored: Mapping[str, Any],
    *,
    generation: int,
    conditions: list[tuple[str, bool, str, str]],
    now: float,
    condition_generations: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Conditions keep their lastTransitionTime while their status stays the same."""
    before = {c.get("type"): c for c in stored.get("conditions") or [] if isinstance(c, dict)}
    made = []
    for kind, true, reason, message in conditions:
        status = "True" if true else "False"
        previous = before.get(kind)
        since = (
            previous["lastTransitionTime"]
            if previous and previous.get("status") == status and previous.get("lastTransitionTime")
            else format_time(now)
        )
        made.append(
            {
                "type": kind,
                "status": status,
                "observedGeneration": (condition_generations or {}).get(kind, generation),
                "lastTransitionTime": whole_seconds(since),
                "reason": reason,
                "message": message[:CONDITION_MESSAGE_MAX],
            }
        )
    return {
        "observedGeneration": generation,
        "conditions": made,
        "nodes": stored.get("nodes") or {"desired": 0, "ready": 0},
        "images": int(stored.get("images") or 0),
        "failures": [],
        "failuresTotal": 0,
    }
