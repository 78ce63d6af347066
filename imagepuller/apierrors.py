"""Every error a call to the Kubernetes API can end in, and how an answer becomes one.

The tree::

    Exception
    ├── KubeError                  a call failed; .status (HTTP, 0 for none), .reason
    │   ├── Transient              unreachable, reset, timeout, 429, 5xx: RETRIED
    │   ├── NamespaceTerminating   403, the namespace is being deleted
    │   ├── Forbidden              403, a permission is missing; .permission names it
    │   ├── NotFound               404
    │   ├── Conflict               409, exists already, or a precondition (uid,
    │   │                          resourceVersion) no longer holds
    │   ├── Invalid                400 or 422, the API's validation refused the object
    │   ├── Expired                410, a watch's resourceVersion is too old: list again
    │   ├── DaemonSetInTheWay      our DaemonSet's name is held by something not ours
    │   └── NotLeader              (also a Stopped) a write refused before it was sent
    ├── Stopped                    the stop event was set while waiting
    │   └── NotLeader
    └── Terminal                   trying again cannot help until the input changes
        └── ConfigRejected         the API refuses the DaemonSet a configuration makes

Retried: only ``Transient``, inside the client, by its one policy (exponential backoff,
bounded in time, cut short by a stop); once that gives up it reaches the caller like any
other. Every other ``KubeError`` reaches the caller at once, and the caller decides: a
controller looks again after its backoff, since the cluster may change (a Role granted, a
namespace recreated), or at once after a ``Conflict``. ``Terminal`` is not a ``KubeError``:
nothing failed to answer, the answer was no, so trying the same again cannot help until
what was given changes; a configuration the API refuses (``ConfigRejected``) is one: what
already runs is left as it is, and the refusal reported. ``Stopped`` ends a loop as a stop
does, never as a failure.

From an answer (:func:`error_from_status`, reached from an ``ApiException`` through
:func:`error_from_api_exception` or from a raw response through :func:`error_from_response`):

    - 403 whose cause (or, from older servers, message) says the namespace is being
      deleted: NamespaceTerminating; any other 403: Forbidden
    - 404 NotFound, 409 Conflict, 410 Expired, 400 and 422 Invalid
    - 429, 5xx and 0 (no status came back): Transient
    - any other status: KubeError

A connection refused or broken (urllib3 and OS errors) is a ``Transient`` too.

This module imports nothing of ours and nothing of the Kubernetes client, so any layer may
name these errors without loading the client.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client.exceptions import ApiException


class KubeError(Exception):
    """A call to the API failed; ``status`` is the HTTP status (0 when none came back)."""

    def __init__(self, message: str, *, status: int = 0, reason: str = ""):
        super().__init__(message)
        self.status = status
        self.reason = reason


class Transient(KubeError):
    """Connection refused or reset, 5xx, 429, timeouts: worth trying again."""


class NamespaceTerminating(KubeError):
    """403 because the namespace is being deleted: nothing can be created in it any more."""


class Forbidden(KubeError):
    """403: the puller's ServiceAccount lacks a permission; ``permission`` names it."""

    def __init__(self, message: str, *, permission: str, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.permission = permission


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    """409: already exists, or a precondition (uid) no longer holds."""


class Invalid(KubeError):
    """422: the API rejected the object; the message is the API's own."""


class Expired(KubeError):
    """410: a watch's resourceVersion is too old; list again."""


class DaemonSetInTheWay(KubeError):
    """A DaemonSet of our name exists and belongs to something else; we leave it alone."""


class Stopped(Exception):
    """The stop event was set while waiting."""


class Terminal(Exception):
    """Trying again cannot help (controller-runtime's ``TerminalError``): the work stops until
    what it was given changes. Not a ``KubeError``: nothing failed to answer, the answer is
    no (a configuration the API refuses, for example)."""


class ConfigRejected(Terminal):
    """The API refuses the DaemonSet this configuration makes (found by a dry run)."""


class NotLeader(Stopped, KubeError):
    """A write refused before it was sent: this process does not hold its leader Lease now.

    A ``Stopped``, so a controller's loop ends as on a stop (the lost Lease is stopping the
    whole operator); a ``KubeError`` too, so a writer that logs API failures and goes on (a
    status, an Event) logs this one the same way, without a traceback."""


def error_from_api_exception(
    err: ApiException, verb: str, resource: str, namespace: str
) -> KubeError:
    return error_from_response(
        err.status or 0, err.reason or "", err.body, verb, resource, namespace
    )


def error_from_response(
    status: int, reason: str, body: bytes | str | None, verb: str, resource: str, namespace: str
) -> KubeError:
    try:
        payload = json.loads(body) if body else {}
    except (ValueError, TypeError):
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    payload.setdefault("code", status)
    payload.setdefault("reason", reason)
    return error_from_status(payload, verb, resource, namespace)


def error_from_status(
    status: dict[str, Any], verb: str, resource: str, namespace: str
) -> KubeError:
    """The error a Status object (an answer's body, or a watch's ERROR event) stands for."""
    code = int(status.get("code") or 0)
    message = status.get("message") or status.get("reason") or f"HTTP {code}"
    reason = status.get("reason") or ""
    where = f" in namespace {namespace}" if namespace else ""
    if code == 403 and _is_namespace_terminating(status):
        return NamespaceTerminating(
            f"namespace {namespace} is being deleted, so nothing can be created in it; "
            f"recreate the namespace or point NAMESPACE elsewhere (API said: {message})",
            status=code,
            reason=reason,
        )
    if code == 403:
        permission = f"{verb} {resource}{where}"
        return Forbidden(
            f"permission denied: the puller may not {permission}; grant it in the puller's Role "
            f"(API said: {message})",
            permission=permission,
            status=code,
            reason=reason,
        )
    if code == 404:
        return NotFound(message, status=code, reason=reason)
    if code == 409:
        return Conflict(message, status=code, reason=reason)
    if code == 410:
        return Expired(message, status=code, reason=reason)
    if code in (400, 422):
        return Invalid(f"the API rejected the {resource}: {message}", status=code, reason=reason)
    if code == 429 or code >= 500 or code == 0:
        return Transient(
            f"{verb} {resource}{where} failed (HTTP {code}): {message}", status=code, reason=reason
        )
    return KubeError(
        f"{verb} {resource}{where} failed (HTTP {code}): {message}", status=code, reason=reason
    )


def _is_namespace_terminating(status: dict[str, Any]) -> bool:
    # The API says so in a cause (NamespaceLifecycle admission); older servers only in the text.
    causes = (status.get("details") or {}).get("causes") or []
    if any(isinstance(c, dict) and c.get("reason") == "NamespaceTerminating" for c in causes):
        return True
    return "because it is being terminated" in str(status.get("message") or "")
