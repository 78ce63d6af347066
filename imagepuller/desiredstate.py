"""The DaemonSet one puller wants: built from its configuration, its owner and the platform.

Rebuilt (and hashed) only when one of those three changes, not on every status update of a
rollout, and checked by the API once per spec hash (a dry run) before anything running is
touched. What it keeps in memory is a cache of what the cluster says (the platform, the
owner) and of what the API accepted; losing it on a restart costs one read and one dry run.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import structlog

from imagepuller import daemonset as ds
from imagepuller import objects
from imagepuller.apierrors import ConfigRejected, Conflict, Forbidden, Invalid
from imagepuller.config import Config
from imagepuller.kube import Kube
from imagepuller.reconciler import Desired

log = structlog.get_logger("imagepuller.controller")

# A DaemonSet the API stores can still make pods that cannot be stored: each pod carries the
# template and, once running, a status per container of about the same size, and etcd refuses
# any write over 1.5 MiB (its default --max-request-bytes), so the DaemonSet controller fails
# for ever while the DaemonSet looks fine. A template over this many bytes of JSON is refused
# before anything is written.
POD_TEMPLATE_MAX_BYTES = 512 * 1024

# Dry runs are made under another name: a create dry run of an existing name is a conflict.
DRY_RUN_SUFFIX = "-dry-run"


OwnerLookup = Callable[[Config], dict[str, Any] | None]


class DesiredState:
    def __init__(self, kube: Kube, identity: str, owner: OwnerLookup | None = None):
        self.kube = kube
        self.identity = identity
        # None until asked: detected at the first look, where a failure is retried.
        self.openshift: bool | None = None
        # The DaemonSet's owner: the puller's Deployment, read from the API (single mode), or
        # what ``owner`` returns (operator mode: the KubernetesImagePuller resource).
        self._owner_lookup = owner
        self._owner: tuple[str, str, dict[str, Any] | None] | None = None
        self._built_from: tuple[Config, dict[str, Any] | None, bool] | None = None
        self._built: Desired | None = None
        self._validated: set[str] = set()  # spec hashes the API accepted in a dry run

    def detect_platform(self) -> None:
        """Once: OpenShift or Kubernetes. A transient failure propagates, so the look is
        retried and detection with it, rather than guessing for the life of the process."""
        if self.openshift is not None:
            return
        try:
            self.openshift = self.kube.is_openshift()
        except Forbidden as err:
            log.warning("platform_unknown", error=str(err), assumed="kubernetes")
            self.openshift = False
            return
        log.info("platform", openshift=self.openshift)

    def owner(self, cfg: Config) -> dict[str, Any] | None:
        """The DaemonSet's owner: given (operator mode), or the puller's own Deployment (None
        when running outside the cluster), read once."""
        if self._owner_lookup is not None:
            return self._owner_lookup(cfg)
        key = (cfg.namespace, cfg.deployment_name)
        if self._owner is None or self._owner[:2] != key:
            owner = self.kube.get_deployment(*key)
            if owner is None:
                log.info(
                    "owner_not_found",
                    deployment=cfg.deployment_name,
                    namespace=cfg.namespace,
                    note="the DaemonSet has no owner reference and is deleted on SIGTERM",
                )
            self._owner = (*key, owner)
        return self._owner[2]

    def forget_owner(self) -> None:
        """Read the owner again at the next need: it may be gone (an uninstall)."""
        self._owner = None

    def desired(self, cfg: Config) -> Desired:
        owner, openshift = self.owner(cfg), bool(self.openshift)
        # Keyed on the owner reference, the only part of the owner the body holds: in operator
        # mode the owner is a fresh copy of the resource at every pass.
        reference = ds.owner_reference(owner) if owner is not None else None
        last = self._built_from
        if not (last and last[0] is cfg and last[1] == reference and last[2] == openshift):
            self._built_from = (cfg, reference, openshift)
            self._built = Desired(
                self.build(cfg),
                cfg.refresh_strategy,
                cfg.caching_interval_seconds,
                cfg.ready_timeout_seconds,
            )
        assert self._built is not None
        return self._built

    def build(self, cfg: Config, refreshed_at: str | None = None) -> dict[str, Any]:
        """The body to write: the desired DaemonSet with the volatile parts (who keeps it, when
        it was refreshed)."""
        return ds.build_daemonset(
            cfg,
            owner=self.owner(cfg),
            openshift=bool(self.openshift),
            controller_id=self.identity or None,
            refreshed_at=refreshed_at,
        )

    def validate(self, desired: Desired) -> None:
        """Have the API validate and admit the DaemonSet before anything running is touched."""
        if desired.spec_hash in self._validated:
            return
        template = desired.body["spec"]["template"]
        size = len(json.dumps(template, separators=(",", ":")).encode())
        if size > POD_TEMPLATE_MAX_BYTES:
            images = len(template["spec"].get("containers") or [])
            raise ConfigRejected(
                f"the DaemonSet's pod template is {size} bytes for {images} images; a pod must "
                f"fit, with its status, in etcd's 1.5 MiB request limit, so the template may be "
                f"at most {POD_TEMPLATE_MAX_BYTES} bytes: cache fewer images (IMAGES and "
                "IMAGES_FROM, or spec.images) in this puller, or split them over several pullers; "
                "nothing was changed"
            )
        probe = copy.deepcopy(desired.body)
        name = objects.name(probe)
        probe["metadata"]["name"] = name[: 63 - len(DRY_RUN_SUFFIX)] + DRY_RUN_SUFFIX
        try:
            self.kube.create_daemonset(probe, dry_run=True)
        except Invalid as err:
            raise ConfigRejected(
                f"the API rejects the DaemonSet this configuration makes, so nothing was "
                f"changed; fix the configuration: {err}"
            ) from None
        except Conflict:
            pass  # something already holds the probe's name; the real write will tell
        self._validated.add(desired.spec_hash)

    def check(self, cfg: Config) -> None:
        """Validate what ``cfg`` makes (ConfigRejected when the API refuses it)."""
        self.validate(self.desired(cfg))
