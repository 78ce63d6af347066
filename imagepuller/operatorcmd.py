"""`imagepuller operator`: a puller for every KubernetesImagePuller resource, while this
replica holds the Lease. Imported only when that command runs."""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping

import structlog

from imagepuller import __version__
from imagepuller.apitransport import guard_writes
from imagepuller.config import ConfigError, load_operator_settings
from imagepuller.exitcodes import CONFIG as EXIT_CONFIG
from imagepuller.exitcodes import OK as EXIT_OK
from imagepuller.kube import Kube
from imagepuller.lease import LeaderElector
from imagepuller.logs import configure_logging
from imagepuller.metrics import metrics_for
from imagepuller.operator import OPERATOR_LEASE, Operator
from imagepuller.policy import load_resource_policy
from imagepuller.processwiring import (
    WORKER_STOP_SECONDS,
    connect,
    process_identity,
    serve_endpoints,
    stop_on_signals,
)


def operator_command(env: Mapping[str, str]) -> int:
    problems: list[str] = []
    try:
        settings = load_operator_settings(env)
    except ConfigError as err:
        problems += err.problems
    try:
        policy = load_resource_policy(env)
    except ConfigError as err:
        problems += err.problems
    if problems:
        print(f"imagepuller operator: {ConfigError(problems)}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_format, settings.log_level)
    log = structlog.get_logger("imagepuller")
    identity = process_identity(settings.pod_name)
    log.info(
        "starting",
        version=__version__,
        mode="operator",
        identity=identity,
        watch_namespaces=list(settings.watch_namespaces) or "all",
        lease_namespace=settings.namespace,
    )
    api_client = connect(settings.kubeconfig, log)
    if api_client is None:
        return EXIT_CONFIG
    stop = threading.Event()
    metrics = metrics_for(settings.metrics_port)
    operator = Operator(
        api_client,
        identity=identity,
        namespaces=settings.watch_namespaces,
        stop=stop,
        metrics=metrics,
        stuck_after=settings.healthz_stuck_after_seconds,
        policy=policy,
    )
    # Short calls for the Lease: a renewal must not hang past the lease it renews. Its own
    # writes are the only ones the write guard lets through without the Lease.
    elector = LeaderElector(
        Kube(api_client, stop=stop, retry_for=1.0, call_timeout=(3.0, 5.0), write_guard=False),
        settings.namespace,
        OPERATOR_LEASE,
        identity,
        stop=stop,
    )
    # Every other client shares api_client (the operator's and each puller's): none of them
    # sends a write unless the Lease is known held at that moment. A leader resumed after a
    # pause past its Lease is refused before its renew loop has even looked, and the loss that
    # loop then finds stops every worker.
    guard_writes(api_client, elector.refusal)
    health = _OperatorHealth(elector, operator)
    serve_endpoints(settings.metrics_host, settings.metrics_port, metrics, health, log)
    lost: list[bool] = []
    worker = threading.Thread(target=operator.run, name="operator", daemon=True)

    stop_on_signals(operator.request_stop, log)

    def on_lost() -> None:
        # Someone else may be reconciling already: stop at once and exit 1 (restarted).
        lost.append(True)
        operator.request_stop()

    runner = threading.Thread(
        target=elector.run,
        args=(worker.start, on_lost),
        name="leader-election",
        daemon=True,
    )
    runner.start()
    stop.wait()
    runner.join(WORKER_STOP_SECONDS)
    if worker.is_alive():
        worker.join(WORKER_STOP_SECONDS)
    if not lost:
        elector.release()  # the successor takes over at once, not after the lease duration
    log.info("stopped")
    return EXIT_CONFIG if lost else EXIT_OK


class _OperatorHealth:
    """/healthz and /readyz of the operator: the leader's workers must all be alive; a
    replica waiting for the Lease is alive and ready (it stands by)."""

    def __init__(self, elector: LeaderElector, operator: Operator):
        self.elector = elector
        self.operator = operator

    def alive(self) -> tuple[bool, str]:
        if not self.elector.is_leader:
            return True, "ok: standing by for the Lease"
        return self.operator.alive()

    def ready(self) -> tuple[bool, str]:
        return True, "ok: leader" if self.elector.is_leader else "ok: standing by"
