"""Why the DaemonSet's pods are not ready: per node, per image, the reason the API reports."""

from __future__ import annotations

from typing import Any

from imagepuller.failures import Failure

# Waiting reasons that only mean "not there yet", not "something is wrong".
_PROGRESS_REASONS = {"ContainerCreating", "PodInitializing"}


def container_failure(status: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, message) when a container status is a failure, else None: waiting for any
    reason but progress (ErrImagePull, ImagePullBackOff, CrashLoopBackOff, ...), or ended with
    a non-zero exit code. One rule for the controller's report and `imagepuller status`."""
    state = status.get("state") or {}
    waiting = state.get("waiting")
    terminated = state.get("terminated")
    if waiting and waiting.get("reason") not in _PROGRESS_REASONS:
        return waiting.get("reason") or "Waiting", waiting.get("message") or ""
    if terminated and terminated.get("exitCode", 0) != 0:
        message = terminated.get("message") or f"exit code {terminated.get('exitCode')}"
        return terminated.get("reason") or "Error", message
    return None


def pull_failures(pods: list[dict[str, Any]]) -> list[Failure]:
    """One per failing container, and one per pod not scheduled (on no node yet).

    Sorted by node and container so the log reads the same way every time.
    """
    failures: list[Failure] = []
    for pod in pods:
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        node = spec.get("nodeName") or ""
        if not node:
            condition = _condition(status, "PodScheduled")
            failures.append(
                Failure(
                    node="(not scheduled)",
                    pod=meta["name"],
                    container="",
                    image="",
                    reason=(condition or {}).get("reason") or "Pending",
                    message=(condition or {}).get("message") or "",
                )
            )
            continue
        images = {
            c["name"]: c.get("image", "")
            for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
        }
        statuses = (status.get("initContainerStatuses") or []) + (
            status.get("containerStatuses") or []
        )
        for container in statuses:
            problem = container_failure(container)
            if problem is None:
                continue
            reason, message = problem
            failures.append(
                Failure(
                    node=node,
                    pod=meta["name"],
                    container=container["name"],
                    image=images.get(container["name"]) or container.get("image", ""),
                    reason=reason,
                    message=message,
                )
            )
    return sorted(failures, key=lambda f: (f.node, f.container, f.pod))


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") != "True":
            found: dict[str, Any] = condition
            return found
    return None
