"""Command line: `imagepuller run | render | check | images | status | operator`. Arguments,
dispatch and exit codes only: each command's work is in a module of its own (``runcmd``,
``operatorcmd``, ``statuscmd``, ``offlinecmd``), imported only when it runs."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from imagepuller import __version__, exitcodes
from imagepuller.config import ConfigError, load_config
from imagepuller.daemonset import MANAGED_SELECTOR
from imagepuller.imageparsers import (
    check_ca_bundle,
    parse_images_from_timeout,
    parse_max_bytes,
    parse_max_images,
)
from imagepuller.output import write_output
from imagepuller.settings import (
    DEFAULT_IMAGES_FROM_MAX_BYTES,
    DEFAULT_IMAGES_FROM_MAX_BYTES_VALUE,
    DEFAULT_IMAGES_FROM_MAX_IMAGES,
    DEFAULT_IMAGES_FROM_TIMEOUT,
    DEFAULT_IMAGES_FROM_TIMEOUT_SECONDS,
    DEFAULT_NAME,
    DEFAULT_NAMESPACE,
)

EXIT_OK = exitcodes.OK
EXIT_CONFIG = exitcodes.CONFIG
EXIT_USAGE = exitcodes.USAGE

# --nodes: far above Kubernetes' tested limit of 5,000 nodes, and small enough that the total
# `check` computes (at most 8Pi x images x nodes) fits Decimal's 28 digits exactly.
MAX_NODES = 1_000_000

DESCRIPTION = """\
Keeps container images cached on every node of a Kubernetes cluster.
It runs a DaemonSet with one container per image and refreshes it every
CACHING_INTERVAL_HOURS so mutable tags are pulled again: a rolling refresh in
which every node keeps its images until its new pod holds them. Settings come
from environment variables (normally a ConfigMap, watched live when
CONFIGMAP_NAME is set); see the README for the table.
"""


STATUS_DESCRIPTION = """\
Read the cluster (KUBECONFIG, ~/.kube/config, or the pod's service account) and show, per
node and per image, whether the puller's DaemonSet holds the image (its container is ready),
is pulling it, failed (with the kubelet's reason and message), or is not scheduled there
(and why: a node selector, the node affinity, a taint), with a summary line and the time of
the last refresh. Nodes alike are grouped into one row, failing ones first.

Needs get/list on daemonsets and list on pods; list on nodes is optional: without it only the
nodes running a pod are shown.

-o json and -o yaml print {"ready": BOOL, "pullers": [...]}, one entry per puller, the same
shape with or without -A.

Exit codes: 0 every selected node holds every image; 1 not (or -A found no puller);
2 bad command line, DaemonSet not found, or the cluster could not be read.
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
    images = commands.add_parser(
        "images",
        help="make an IMAGES value from external_images.txt lists (files or URLs)",
        description="Read the Dev Spaces registries' external_images.txt lists (a URL, a file, "
        "or - for standard input), skip empty lines and # comments, drop duplicates, check "
        "every reference, and print an IMAGES value (name=image;...) to paste into "
        "`oc process -p IMAGES=...` or the ConfigMap. Names are the image's last path segment "
        "(che-code), with a short hash only where two collide or the name would be invalid. "
        "Invalid lines are reported on standard error with source and line, and skipped. "
        "Exit 1 when a source cannot be read or is over a limit (nothing is printed then).",
    )
    images.add_argument("sources", nargs="+", metavar="SOURCE", help="a URL, a file, or -")
    images.add_argument(
        "--merge",
        metavar="IMAGES",
        default="",
        help="an existing IMAGES value: its entries come first with their names kept, and "
        "only images it does not hold are added (use it when updating a list, so no name "
        "changes)",
    )
    images.add_argument(
        "-o",
        "--output",
        choices=("value", "configmap-patch"),
        default="value",
        help="value: the IMAGES value on one line (default); configmap-patch: YAML for "
        "`kubectl patch configmap NAME --patch-file FILE`",
    )
    images.add_argument(
        "--ca-bundle",
        metavar="FILE",
        type=_option(check_ca_bundle),
        default=None,
        help="PEM file of CAs trusted for https URLs besides the system's",
    )
    images.add_argument(
        "--timeout",
        type=_option(parse_images_from_timeout),
        default=DEFAULT_IMAGES_FROM_TIMEOUT_SECONDS,
        metavar="DURATION",
        help=f"bound on reading one URL, such as 10s (default {DEFAULT_IMAGES_FROM_TIMEOUT})",
    )
    images.add_argument(
        "--max-images",
        type=_option(parse_max_images),
        default=DEFAULT_IMAGES_FROM_MAX_IMAGES,
        metavar="N",
        help=f"refuse lists holding more images than this (default "
        f"{DEFAULT_IMAGES_FROM_MAX_IMAGES})",
    )
    images.add_argument(
        "--max-bytes",
        type=_option(parse_max_bytes),
        default=DEFAULT_IMAGES_FROM_MAX_BYTES_VALUE,
        metavar="SIZE",
        help=f"refuse a list larger than this, such as 500Ki (default "
        f"{DEFAULT_IMAGES_FROM_MAX_BYTES})",
    )
    _add_status_parser(commands)
    commands.add_parser(
        "operator",
        help="serve KubernetesImagePuller resources: a DaemonSet per resource",
        description="Watch KubernetesImagePuller resources (che.eclipse.org/v1alpha1) in every "
        "namespace, or those in WATCH_NAMESPACES, and keep for each one a DaemonSet in its "
        "namespace, owned by it, with its status kept current. Replicas elect a leader with a "
        "Lease in POD_NAMESPACE; only the leader works. Stops on SIGTERM/SIGINT, keeping the "
        "DaemonSets (their resources own them; the next leader adopts them).",
    )
    return parser


def _add_status_parser(commands: Any) -> argparse.ArgumentParser:
    """Add `status` to ``commands`` (the parser's subparsers); the command is statuscmd's."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "status",
        help="show which node holds which image (exit 0 when all do)",
        description=STATUS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-n",
        "--namespace",
        metavar="NS",
        help=f"the DaemonSet's namespace (default: NAMESPACE, else {DEFAULT_NAMESPACE})",
    )
    parser.add_argument(
        "--name",
        metavar="NAME",
        help=f"the DaemonSet's name (default: DAEMONSET_NAME, else {DEFAULT_NAME})",
    )
    parser.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help=f"every DaemonSet labelled {MANAGED_SELECTOR}, in every namespace you may list "
        "(not with --namespace or --name)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "yaml"),
        default="table",
        help="table: for reading (default); json, yaml: every node and failure, for scripts",
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
    if args.command == "images":
        from imagepuller.offlinecmd import images_command

        return images_command(args)
    env = os.environ if env is None else env
    if args.command == "status":
        # Reads the cluster only: needs no IMAGES, so it comes before load_config.
        from imagepuller.statuscmd import status_command

        return status_command(args, env)
    if args.command == "operator":
        # Its pullers' settings come from their resources, not from the environment.
        from imagepuller.operatorcmd import operator_command  # only this command's imports

        return operator_command(env)
    try:
        config = load_config(env)
    except ConfigError as err:
        print(f"imagepuller: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command in ("render", "check"):
        from imagepuller.offlinecmd import check, render

        if args.command == "render":
            return render(config, openshift=args.openshift)
        return check(config, nodes=args.nodes)
    from imagepuller.runcmd import run  # the Kubernetes client is loaded for `run` only

    return run(config)


def _option(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An option read by the setting's own parser, its ValueError a usage error."""

    def read(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"{text[:80]!r}: {err}") from None

    return read


def _node_count(text: str) -> int:
    """--nodes: ASCII digits only. int() alone would take "١٢" or "１２" (other scripts'
    digits), "1_2" and surrounding spaces: not what anyone means to type as a node count."""
    shown = text if len(text) <= 40 else f"{text[:37]}..."
    expected = (
        f"expected a whole number of nodes from 1 to {MAX_NODES} in digits 0-9, got {shown!r}"
    )
    if not re.fullmatch(r"[0-9]{1,20}", text) or not 1 <= int(text) <= MAX_NODES:
        raise argparse.ArgumentTypeError(expected)
    return int(text)
