"""Times as the Kubernetes API writes them (RFC 3339, UTC), in one place.

Three precisions, each where the API uses it: ``micro_time`` for MicroTime fields (Events,
Leases); ``format_time`` with milliseconds for our own annotations (two refreshes in one second
still differ); ``whole_seconds`` for metav1.Time fields (conditions), which the API stores to the
second, so that a comparison with what is stored sees no change that is none.
"""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(text: str | None) -> float | None:
    """An RFC 3339 UTC time as the API writes it (``2026-11-28T20:00:00Z``), or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def format_time(seconds: float) -> str:
    """RFC 3339 UTC with milliseconds: two refreshes in one second still differ."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def micro_time(seconds: float) -> str:
    """The API's MicroTime: RFC 3339 with microseconds, UTC."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def whole_seconds(timestamp: str) -> str:
    """``timestamp`` as a metav1.Time field stores it: the API would store 20:00:00Z for
    20:00:00.123Z, and the next comparison would see a change that is none."""
    head, dot, _ = timestamp.partition(".")
    return f"{head}Z" if dot else timestamp
