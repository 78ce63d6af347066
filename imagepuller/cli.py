"""Command line: `imagepuller run | render | check | images | status`. Arguments, wiring and
exit codes only."""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from imagepuller import __version__, exitcodes, imagelists
from imagepuller.config import Config, ConfigError, load_config, memory_limit_bytes, parse_images
from imagepuller.daemonset import MANAGED_SELECTOR, build_daemonset
from imagepuller.durations import format_duration
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
    if args.command == "render":
        return render(config, openshift=args.openshift)
    if args.command == "check":
        return check(config, nodes=args.nodes)
    from imagepuller.runcmd import run  # the Kubernetes client is loaded for `run` only

    return run(config)


def render(config: Config, *, openshift: bool) -> int:
    if config.images_from:
        # As the controller would: the lists are read now and their images added. What goes
        # wrong is logged on standard error, which keeps the YAML on standard output clean.
        from imagepuller.listsource import ImageListSource  # and structlog: only here
        from imagepuller.logs import configure_logging

        configure_logging(config.log_format, config.log_level)
        lists = ImageListSource()
        if lists.read(config).failing:
            print(
                "imagepuller render: nothing rendered: an IMAGES_FROM list could not be used",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        images = imagelists.merge_images(config.images, lists.references(config))
        config = dataclasses.replace(config, images=images)
    from imagepuller.manifest_yaml import dump_manifest  # YAML only where it is written

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
    if config.images_from:
        out.write(
            f"images from lists (IMAGES_FROM), read at start and before each refresh, at most "
            f"{config.images_from_max_images}, not counted below:\n"
        )
        for url in config.images_from:
            out.write(f"  {url}\n")
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


def images_command(args: argparse.Namespace) -> int:
    """`imagepuller images`: every source read whole before anything is printed."""
    try:
        existing = parse_images(args.merge) if args.merge.strip() else ()
    except ConfigError as err:
        print(f"imagepuller images: --merge: {err}", file=sys.stderr)
        return EXIT_USAGE
    references: list[str] = []
    for source in args.sources:
        try:
            listed = imagelists.read_source(
                source,
                timeout=args.timeout,
                max_bytes=args.max_bytes,
                ca_bundle=args.ca_bundle,
            )
        except imagelists.ListUnavailable as err:
            print(f"imagepuller images: {err}", file=sys.stderr)
            return EXIT_CONFIG
        for problem in listed.problems:
            print(f"imagepuller images: {problem}", file=sys.stderr)
        references.extend(listed.references)
    merged = imagelists.merge_images(existing, references)  # existing names stay as they are
    added = len(merged) - len(existing)
    over_limit = imagelists.too_many(added, args.max_images)
    if over_limit:
        print(f"imagepuller images: {over_limit} (--max-images)", file=sys.stderr)
        return EXIT_CONFIG
    if not merged:
        print("imagepuller images: the sources list no image", file=sys.stderr)
        return EXIT_CONFIG
    value = imagelists.format_images(merged)
    if args.output == "configmap-patch":
        from imagepuller.manifest_yaml import dump_manifest

        return write_output(dump_manifest({"data": {"IMAGES": value}}))
    return write_output(value + "\n")


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
