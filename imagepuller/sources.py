"""Where the configuration comes from while the puller runs: its own ConfigMap, watched live.

At start the settings come from the environment (the Deployment fills it from the ConfigMap).
With CONFIGMAP_NAME set, the controller also watches that ConfigMap through the API, so an edit
applies within seconds, without a restart: every setting is then read from the ConfigMap (a
key removed from it means its default, as it would after a restart), except the variables
that describe the process itself (``ENV_ONLY_VARIABLES``: the Deployment sets them with
``env:``, which wins over the ConfigMap in the pod too).

An edit that is invalid is reported completely (the log and a Warning Event on the
ConfigMap) and changes nothing; a deleted ConfigMap keeps the last good configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog

from imagepuller import objects
from imagepuller.config import Config, ConfigError, load_config
from imagepuller.events import EventRecorder, involved
from imagepuller.informer import Informer
from imagepuller.kube import CONFIGMAPS, Kube
from imagepuller.settings import ENV_ONLY_VARIABLES, SETTINGS

log = structlog.get_logger("imagepuller.sources")


def effective_environment(base: Mapping[str, str], data: Mapping[str, str]) -> dict[str, str]:
    """The environment a pod started now would get: settings from the ConfigMap's ``data``,
    the process variables and everything else from ``base`` (this process's environment)."""
    kept = {k: v for k, v in base.items() if k in ENV_ONLY_VARIABLES or k not in SETTINGS}
    given = {k: v for k, v in data.items() if k not in ENV_ONLY_VARIABLES}
    return {**kept, **given}


class ConfigMapSource:
    """Watches one ConfigMap and offers each valid new configuration to ``offer``."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        base: Mapping[str, str],
        offer: Callable[[Config], None],
        *,
        events: EventRecorder,
        on_invalid: Callable[[], None] | None = None,
    ):
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.base = dict(base)
        self.offer = offer
        self.on_invalid = on_invalid  # counts an edit our checks refuse (a metric)
        self.events = events
        self._seen_version: str | None = None
        self._missing_reported = False
        self.informer = Informer(kube, CONFIGMAPS, namespace, self._changed, name=name)

    def start(self) -> ConfigMapSource:
        self.informer.start()
        return self

    def _changed(self) -> None:
        configmap = self.informer.get(self.name)
        if configmap is None:
            if not self._missing_reported:
                self._missing_reported = True
                log.warning(
                    "configmap_missing",
                    name=self.name,
                    namespace=self.namespace,
                    note="keeping the configuration in force; it applies again once recreated",
                )
            return
        self._missing_reported = False
        version = objects.resource_version(configmap)
        if version == self._seen_version:
            return
        self._seen_version = version
        environment = effective_environment(self.base, configmap.get("data") or {})
        try:
            config = load_config(environment)
        except ConfigError as err:
            log.error(
                "config_rejected",
                configmap=self.name,
                problems=err.problems,
                error=str(err),
                note="the edit changed nothing; the configuration in force stays",
            )
            self.report_rejected(str(err), configmap)
            if self.on_invalid is not None:
                self.on_invalid()
            return
        self.offer(config)

    def report_rejected(self, message: str, configmap: dict[str, Any] | None = None) -> None:
        """A Warning Event on the ConfigMap: `kubectl describe configmap` and `oc get events`
        show why the edit did not apply, next to the object that was edited."""
        configmap = configmap or self.informer.get(self.name)
        if configmap is None:
            return
        self.events.record(
            involved(configmap, "v1", "ConfigMap"),
            warning=True,
            reason="ConfigRejected",
            action="Configure",
            note=message,
        )
