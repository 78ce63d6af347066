"""`imagepuller render`, `check` and `images`: the commands that read no cluster.

Each takes what ``cli`` parsed (and, for `render` and `check`, the configuration it loaded)
and prints to standard output; problems go to standard error with an exit code. Imported only
when one of them runs, like every command's module.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import sys
from decimal import Decimal

from imagepuller import exitcodes, imagelists
from imagepuller.config import Config, ConfigError, memory_limit_bytes, parse_images
from imagepuller.daemonset import build_daemonset
from imagepuller.durations import format_duration
from imagepuller.output import write_output


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
            return exitcodes.CONFIG
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
        return exitcodes.USAGE
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
            return exitcodes.CONFIG
        for problem in listed.problems:
            print(f"imagepuller images: {problem}", file=sys.stderr)
        references.extend(listed.references)
    merged = imagelists.merge_images(existing, references)  # existing names stay as they are
    added = len(merged) - len(existing)
    over_limit = imagelists.too_many(added, args.max_images)
    if over_limit:
        print(f"imagepuller images: {over_limit} (--max-images)", file=sys.stderr)
        return exitcodes.CONFIG
    if not merged:
        print("imagepuller images: the sources list no image", file=sys.stderr)
        return exitcodes.CONFIG
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
