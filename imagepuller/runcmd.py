"""`imagepuller run`: one puller, configured from the environment, until SIGTERM.

Imported only when that command runs, so that `render`, `check` and
`images` never load the Kubernetes client.
"""

from __future__ import annotations

import os
import threading

import structlog

from imagepuller import __version__
from imagepuller.config import Config
from imagepuller.controller import Controller, controller_client
from imagepuller.events import EventRecorder
from imagepuller.exitcodes import CONFIG as EXIT_CONFIG
from imagepuller.logs import configure_logging
from imagepuller.metrics import metrics_for
from imagepuller.processwiring import (
    connect,
    process_identity,
    serve_endpoints,
    stop_on_signals,
)
from imagepuller.sources import ConfigMapSource


def run(config: Config) -> int:
    configure_logging(config.log_format, config.log_level)
    log = structlog.get_logger("imagepuller")
    log.info("starting", version=__version__, **config.summary())
    if config.pod_namespace and config.pod_namespace != config.namespace:
        log.warning(
            "namespace_mismatch",
            namespace=config.namespace,
            pod_namespace=config.pod_namespace,
            note="NAMESPACE differs from the namespace the puller runs in; its Role only grants "
            "access there. Set NAMESPACE (the ConfigMap's, or -p NAMESPACE=...) to "
            f"{config.pod_namespace} unless you granted access in {config.namespace}",
        )
    api_client = connect(config.kubeconfig, log)
    if api_client is None:
        return EXIT_CONFIG
    stop = threading.Event()
    metrics = metrics_for(config.metrics_port)
    kube, health = controller_client(
        api_client,
        config,
        stop=stop,
        metrics=metrics,
        stuck_after=config.healthz_stuck_after_seconds,
    )
    serve_endpoints(config.metrics_host, config.metrics_port, metrics, health, log)
    identity = process_identity()
    events = EventRecorder(kube, identity)
    controller = Controller(
        config,
        kube,
        stop=stop,
        identity=identity,
        metrics=metrics,
        health=health,
        events=events,
    )
    if config.configmap_name:
        # Live edits: the ConfigMap lives where the puller runs (the templates put both there).
        source = ConfigMapSource(
            kube,
            config.pod_namespace or config.namespace,
            config.configmap_name,
            os.environ,
            controller.offer,
            on_invalid=lambda: metrics.config_rejected(
                controller.config.namespace, controller.config.daemonset_name
            ),
            events=events,
        ).start()
        controller.on_rejected = lambda _config, message: source.report_rejected(message)

    stop_on_signals(controller.request_stop, log)
    # The looks run on the manager's worker thread, so this (main) thread only waits for the
    # stop: it is always free to take a signal and cut the worker's calls short at once, even
    # mid-read on a TLS socket. A worker stuck past the wait is left behind (a daemon thread)
    # and the DaemonSet is deleted from here.
    code = controller.run()
    log.info("stopped")
    return code
