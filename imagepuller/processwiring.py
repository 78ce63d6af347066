"""What `imagepuller run` and `imagepuller operator` wire the same way around their work: the
process's identity, the API client, the endpoints, and the signals that ask it to stop."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s

from imagepuller.apierrors import KubeError
from imagepuller.apitransport import load_api_client
from imagepuller.endpoints import Endpoints, Probes
from imagepuller.metrics import Metrics

# After a stop is asked for, the operator's work gets this long to finish on its own before
# the Lease is released without it, well within the default 30 s grace period. (`run` waits
# for its look as long: pullerloop.LOOK_STOP_SECONDS.)
WORKER_STOP_SECONDS = 12.0


def process_identity(pod_name: str | None = None) -> str:
    """Who this process is, in the DaemonSet's annotations, Events and the Lease: the pod's
    name when the Deployment gives it, or host/pid."""
    return pod_name or f"{socket.gethostname()}/{os.getpid()}"


def connect(kubeconfig: str | None, log: Any) -> k8s.ApiClient | None:
    """The API client, or None after logging why there is none (the caller exits 1)."""
    try:
        return load_api_client(kubeconfig)
    except KubeError as err:
        log.error("no_cluster_access", error=str(err))
        return None


def serve_endpoints(host: str, port: int, metrics: Metrics, probes: Probes, log: Any) -> None:
    """/metrics, /healthz and /readyz on ``port`` (none when 0)."""
    if not port:
        return
    try:
        endpoints = Endpoints(host, port, metrics, probes)
    except OSError as err:
        # The work matters more than its endpoints: it runs on, and the failing probes make
        # the problem visible in the pod's events.
        log.error(
            "endpoints_unavailable",
            host=host,
            port=port,
            error=str(err),
            note="no /metrics, /healthz or /readyz; the work goes on",
        )
        return
    endpoints.start()
    log.info("endpoints", port=endpoints.port, paths=["/metrics", "/healthz", "/readyz"])


def stop_on_signals(request_stop: Callable[[], None], log: Any) -> None:
    """SIGTERM (the kubelet's) and SIGINT (a terminal's) log and call ``request_stop``; the
    main thread stays free to take them, so a stop is never missed while the work blocks."""

    def on_signal(signum: int, _frame: object) -> None:
        log.info("stop_requested", signal=signal.Signals(signum).name)
        request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
