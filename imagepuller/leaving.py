"""What a stopping puller leaves behind: its DaemonSet, unless nothing would ever adopt it.

Kept when our Deployment owns it: a restart or an upgrade adopts it, and an uninstall deletes
the Deployment, whose DaemonSet the garbage collector removes. Deleted when nothing owns it
(`make run`, the CLI against a remote cluster), or it would cache images for ever.
"""

from __future__ import annotations

from typing import Any

import structlog

from imagepuller import objects
from imagepuller.apierrors import Conflict, KubeError
from imagepuller.config import Config
from imagepuller.kube import Kube

log = structlog.get_logger("imagepuller.controller")

# On shutdown the DaemonSet must be gone well within the pod's 30 s grace period.
SHUTDOWN_DELETE_TIMEOUT = (3.0, 10.0)  # connect, read (seconds)


def leave_daemonset(
    kube: Kube,
    cfg: Config,
    uid: str | None,
    current: dict[str, Any] | None,
    *,
    delete: bool,
) -> None:
    """``uid``: the DaemonSet this puller keeps (None: none); ``current``: the one of its
    name in the watch-fed cache; ``delete``: whether to delete one that nothing owns
    (operator mode: never)."""
    if uid is None or not delete:
        log.info("shutdown", deleted=False)
        return
    owners = objects.owner_references(current or {})
    if current is not None and objects.stored_uid(current) == uid and owners:
        log.info(
            "shutdown",
            deleted=False,
            name=cfg.daemonset_name,
            uid=uid,
            note=f"kept: owned by {owners[0].get('kind')} {owners[0].get('name')}; the next "
            "start adopts it",
        )
        return
    # The stop event is set, so this call is tried once, without retries: it must not hold
    # the pod past its termination grace period.
    try:
        deleted = kube.delete_daemonset(
            cfg.namespace,
            cfg.daemonset_name,
            uid=uid,
            foreground=False,
            timeout=SHUTDOWN_DELETE_TIMEOUT,
        )
    except Conflict:
        deleted = False  # a different DaemonSet now holds the name: not ours to delete
    except KubeError as err:
        log.error("shutdown_delete_failed", error=str(err))
        return
    log.info("shutdown", deleted=deleted, name=cfg.daemonset_name, uid=uid)
