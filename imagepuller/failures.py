"""Why a node does not hold an image, or why pods are missing: one ``Failure``, whoever reads it.

The pods' container statuses, the DaemonSet's Events and one node's pods all say it in this
shape. The controller's log line and metrics, a resource's status and the summary in its
Degraded condition and NotReady Event are rendered here, each with exactly the fields and types
its readers know; `imagepuller status -o json` lists the fields with ``still_held``
(cachestatus).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# A failure's message in a resource's status is cut to this length: a kubelet message can be
# long, and twenty of them share one object.
FAILURE_MESSAGE_MAX = 1024


@dataclass(frozen=True)
class Failure:
    node: str  # "(not scheduled)" before a node is chosen; empty when no node is concerned
    image: str  # the reference; empty when the whole pod failed or was never created
    container: str  # empty when the whole pod failed (unschedulable, evicted, not created)
    reason: str
    message: str
    pod: str = ""  # "(not created)" / "(none)" for what only Events tell
    # How many Events said it (pods not created, the DaemonSet controller's warnings); None
    # for what a pod's status says, which is said once.
    times: int | None = None
    # An older pod on the node still holds the image; the newest one (a refresh's) fails.
    still_held: bool = False

    @property
    def count(self) -> int:
        """How many times it happened, for the metrics: a pod's status counts once."""
        return 1 if self.times is None else self.times

    def log_fields(self) -> dict[str, str]:
        """The fields of its ``image_not_cached`` line: all strings, ``times`` only when
        Events counted it (the README's logs table)."""
        fields = {
            "node": self.node,
            "pod": self.pod,
            "container": self.container,
            "image": self.image,
            "reason": self.reason,
            "message": self.message,
        }
        if self.times is not None:
            fields["times"] = str(self.times)
        return fields

    def status_entry(self) -> dict[str, str]:
        """Its entry in a KubernetesImagePuller's ``status.failures``."""
        return {
            "node": self.node,
            "image": self.image,
            "reason": self.reason,
            "message": self.message[:FAILURE_MESSAGE_MAX],
        }


def failure_summary(failures: Sequence[Failure], shown: int = 5) -> str:
    """``node image: reason`` for the first few failures, and how many more."""
    if not failures:
        return "no failure reported yet (pods still pulling or being created)"
    parts = [
        f"{f.node or '?'} {f.image or f.container}: {f.reason or 'unknown'}".replace("  ", " ")
        for f in failures[:shown]
    ]
    more = f" and {len(failures) - shown} more" if len(failures) > shown else ""
    return "failing: " + "; ".join(parts) + more
