"""Command line: `imagepuller run | render | check`. Arguments, wiring and exit codes only."""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from decimal import Decimal

import structlog

from imagepuller import __version__, exitcodes
from imagepuller.config import Config, ConfigError, load_config, memory_limit_bytes
from imagepuller.controller import Controller
from imagepuller.daemonset import build_daemonset
from imagepuller.durations import format_duration
from imagepuller.kube import Kube, KubeError, load_api_client
from imagepuller.logs import configure_logging
from imagepuller.manifest_yaml import dump_manifest
from imagepuller.output import write_output
from imagepuller.sources import ConfigMapSource

EXIT_OK = exitcodes.OK
EXIT_CONFIG = exitcodes.CONFIG
EXIT_USAGE = exitcodes.USAGE

# --nodes: far above Kubernetes' tested limit of 5,000 nodes, and small enough that the total
# `check` computes (at most 8Pi x images x nodes) fits Decimal's 28 digits exactly.
MAX_NODES = 1_000_000

# After SIGTERM the worker gets this long to finish on its own. If a call it is blocked in
# cannot be interrupted (an unanswered request), the main thread deletes the DaemonSet
# itself (at most 3 s connect + 10 s read), all well within the default 30 s grace period.
WORKER_STOP_SECONDS = 12.0

DESCRIPTION = """\
Keeps container images cached on every node of a Kubernetes cluster.
It runs a DaemonSet with one container per image and refreshes it every
CACHING_INTERVAL_HOURS so mutable tags are pulled again: a rolling refresh in
which every node keeps its images until its new pod holds them. Settings come
from environment variables (normally a ConfigMap, watched live when
CONFIGMAP_NAME is set); see the README for the table.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagepuller",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"imagepuller {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "run",
        help="run the controller until SIGTERM/SIGINT",
        description="Create the DaemonSet (or adopt the one an earlier run left), follow it "
        "until it is ready on every node, refresh it every CACHING_INTERVAL_HOURS, apply "
        "ConfigMap edits live, recreate it if deleted. On SIGTERM or SIGINT it is kept when the "
        "puller's Deployment owns it (the next start adopts it) and deleted otherwise.",
    )
    render = commands.add_parser(
        "render",
        help="print the DaemonSet as YAML (no cluster needed)",
        description="Print the DaemonSet the controller would create from the current "
        "environment. The owner reference is added at run time and is not shown.",
    )
    render.add_argument(
        "--openshift",
        action="store_true",
        help="render for OpenShift: no fixed UID/GID (the SCC assigns them)",
    )
    check = commands.add_parser(
        "check",
        help="validate the configuration and print a summary with the memory sizing",
        description="Validate every setting and print the effective configuration and the "
        "memory the DaemonSet pods reserve: memory limit x images x nodes.",
    )
    check.add_argument(
        "--nodes",
        type=_node_count,
        default=None,
        metavar="N",
        help=f"number of nodes to size for, 1 to {MAX_NODES} (default: the per-node figure)",
    )
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        # --help and --version print, then exit 0: flush now, so that a closed pipe ends
        # quietly here too instead of in the interpreter's "Exception ignored" at exit.
        if exit_.code in (0, None) and sys.stdout is not None:
            code = write_output("")
            if code != EXIT_OK:
                raise SystemExit(code) from None
        raise
    env = os.environ if env is None else env
    try:
        config = load_config(env)
    except ConfigError as err:
        print(f"imagepuller: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "render":
        return render(config, openshift=args.openshift)
    if args.command == "check":
        return check(config, nodes=args.nodes)
    return run(config)


def render(config: Config, *, openshift: bool) -> int:
    return write_output(dump_manifest(build_daemonset(config, openshift=openshift)))


def check(config: Config, *, nodes: int | None) -> int:
    return write_output(check_report(config, nodes=nodes))


def check_report(config: Config, *, nodes: int | None) -> str:
    """What `check` prints: the effective configuration and the memory sizing."""
    out = io.StringIO()
    out.write("configuration is valid\n")
    out.write(f"images ({len(config.images)}), in container order:\n")
    for image in config.images:
        out.write(f"  {image.name}: {image.image}\n")
    out.write(
        f"daemonset: {config.namespace}/{config.daemonset_name} "
        f"(owner: Deployment {config.deployment_name})\n"
    )
    out.write(
        f"refresh every: {config.caching_interval_hours:g}h "
        f"({format_duration(config.caching_interval_seconds)}); "
        f"ready timeout: {format_duration(config.ready_timeout_seconds)}\n"
    )
    out.write(
        f"per image container: cpu {config.cpu_request} request / {config.cpu_limit} limit, "
        f"memory {config.memory_request} request / {config.memory_limit} limit\n"
    )
    for label, value in (
        ("node selector", config.node_selector),
        ("affinity", config.affinity),
        ("tolerations", list(config.tolerations)),
        ("image pull secrets", list(config.image_pull_secrets)),
        ("annotations", config.daemonset_annotations),
    ):
        if value:
            out.write(f"{label}: {value}\n")
    out.write(f"init image (KIP_IMAGE): {config.kip_image}\n")
    per_node = memory_limit_bytes(config) * len(config.images)
    if nodes is None:
        out.write(
            f"memory reserved per node: {config.memory_limit} x {len(config.images)} images "
            f"= {format_bytes(per_node)} (use --nodes N for the cluster total)\n"
        )
    else:
        out.write(
            f"memory reserved in total: {config.memory_limit} x {len(config.images)} images "
            f"x {nodes} nodes = {format_bytes(per_node * nodes)}\n"
        )
    return out.getvalue()


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
    try:
        api_client = load_api_client(config.kubeconfig)
    except KubeError as err:
        log.error("no_cluster_access", error=str(err))
        return EXIT_CONFIG
    stop = threading.Event()
    kube = Kube(api_client, stop=stop, retry_for=max(30.0, config.ready_timeout_seconds))
    identity = f"{socket.gethostname()}/{os.getpid()}"
    controller = Controller(config, kube, stop=stop, identity=identity)
    if config.configmap_name:
        # Live edits: the ConfigMap lives where the puller runs (the templates put both there).
        source = ConfigMapSource(
            kube,
            config.pod_namespace or config.namespace,
            config.configmap_name,
            os.environ,
            controller.offer,
            identity=identity,
        ).start()
        controller.on_rejected = lambda _config, message: source.report_rejected(message)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("stop_requested", signal=signal.Signals(signum).name)
        controller.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # The controller runs in a worker thread so that the main thread is always free to take
    # a signal and unblock the worker's watch at once, even mid-read on a TLS socket.
    result: list[int] = []

    def work() -> None:
        try:
            result.append(controller.run())
        finally:
            stop.set()  # the worker ended (it only does after a stop, or on a bug): wake main

    # A daemon thread: if it is stuck in a call when the grace period runs out, the process
    # can still exit.
    worker = threading.Thread(target=work, name="controller", daemon=True)
    worker.start()
    stop.wait()
    worker.join(WORKER_STOP_SECONDS)
    if worker.is_alive():
        log.warning(
            "shutdown_forced",
            waited_seconds=WORKER_STOP_SECONDS,
            note="the controller was blocked in an API call; deleting the DaemonSet now",
        )
        controller.shutdown()
        log.info("stopped")
        return EXIT_OK
    log.info("stopped")
    return result[0] if result else EXIT_CONFIG


# Whole byte counts below this are formatted exactly (with integers: Decimal arithmetic would
# round or fail beyond its 28 digits); `check` never computes more than about 1e26 bytes.
_EXACT_BYTES_BELOW = 10**40


def format_bytes(amount: Decimal | int) -> str:
    """2097152000 -> '2000Mi': the largest binary unit that divides the amount exactly.

    Any Decimal is shown without raising: infinities and NaN as such, a fraction of a byte or
    an amount beyond ``_EXACT_BYTES_BELOW`` to four significant digits (``1.000e+40``)."""
    value = Decimal(amount)
    if not value.is_finite():
        return str(value)
    if value.is_signed() and value:
        return "-" + format_bytes(-value)
    if value >= _EXACT_BYTES_BELOW or value != value.to_integral_value():
        return f"{value:.4g}"
    whole = int(value)
    for unit, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if whole >= size and whole % size == 0:
            return f"{whole // size}{unit}"
    if whole >= 2**20:
        return f"{Decimal(whole) / 2**20:.1f}Mi"
    return str(whole)


def _node_count(text: str) -> int:
    shown = text if len(text) <= 40 else f"{text[:37]}..."
    expected = f"expected a whole number of nodes from 1 to {MAX_NODES}, got {shown!r}"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(expected) from None
    if not 1 <= value <= MAX_NODES:
        raise argparse.ArgumentTypeError(expected)
    return value
