"""`imagepuller status`: which node holds which image, read from the cluster, as a table or for
scripts, with an exit code that can gate a rollout. Its arguments are ``cli``'s; this module is
imported only when the command runs.

Reading only: get/list daemonsets and list pods; list nodes is optional (without it, nodes with
no pod are not shown). The model is ``cachestatus``'s and its text ``cachetable``'s; this
module reads the objects, picks the output and the exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

from imagepuller import cachestatus, cachetable, exitcodes, objects
from imagepuller.apierrors import Forbidden, KubeError
from imagepuller.apitransport import load_api_client
from imagepuller.cachestatus import PullerStatus
from imagepuller.daemonset import MANAGED_SELECTOR
from imagepuller.kube import Kube
from imagepuller.logs import configure_logging
from imagepuller.manifest_yaml import dump_manifest
from imagepuller.output import write_output
from imagepuller.settings import DEFAULT_NAME, DEFAULT_NAMESPACE

# Exit codes: 0 every selected node holds every image, 1 not (or no puller found), 2 the
# command line is wrong or the cluster could not be read. Nothing else can be told apart by a
# script gating a rollout, so access errors share argparse's 2 rather than `run`'s 1.
READY = exitcodes.OK
NOT_READY = 1
ACCESS = exitcodes.USAGE

# A transient API failure is retried this long: a person or a pipeline is waiting.
RETRY_SECONDS = 10.0


class _NotFound(Exception):
    """The DaemonSet asked for does not exist."""


def status_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Read, print, and exit 0 when every puller shown is ready, 1 when not, 2 on errors."""
    if args.all_namespaces and (args.namespace or args.name):
        _error("-A/--all-namespaces cannot be combined with --namespace or --name")
        return ACCESS
    # The client's retry warnings ("api_retry") say why it is slow; on standard error, so
    # that they never mix into the JSON or YAML on standard output.
    configure_logging("console", "warning", sys.stderr)
    try:
        kube = _connect(env)
        if args.all_namespaces:
            statuses = read_all(kube)
        else:
            namespace, name = _target(args, env)
            statuses = [read_one(kube, namespace, name)]
    except _NotFound as err:
        _error(str(err))
        return ACCESS
    except Forbidden as err:
        _error(
            f"permission denied: you may not {err.permission} (status needs get and list "
            "on daemonsets and list on pods; list on nodes is optional)"
        )
        return ACCESS
    except KubeError as err:
        _error(str(err))
        return ACCESS
    if not statuses:
        _error(f"no DaemonSet labelled {MANAGED_SELECTOR} in any namespace you may list")
        return NOT_READY
    code = write_output(render(statuses, args.output, many=args.all_namespaces))
    if code != exitcodes.OK:
        return code
    return READY if all(status.ready for status in statuses) else NOT_READY


def read_one(kube: Kube, namespace: str, name: str) -> PullerStatus:
    daemonset = kube.get_daemonset(namespace, name)
    if daemonset is None:
        raise _NotFound(
            f"no DaemonSet {name} in namespace {namespace} (choose it with --namespace and "
            "--name, or NAMESPACE and DAEMONSET_NAME)"
        )
    return _summarize(kube, daemonset, _nodes(kube))


def read_all(kube: Kube) -> list[PullerStatus]:
    """Every puller's status; the nodes are read once for all of them."""
    daemonsets = kube.list_daemonsets(None, MANAGED_SELECTOR)
    if not daemonsets:
        return []
    nodes = _nodes(kube)
    daemonsets.sort(key=lambda d: (objects.namespace(d), objects.name(d)))
    return [_summarize(kube, daemonset, nodes) for daemonset in daemonsets]


def render(statuses: list[PullerStatus], output: str, *, many: bool) -> str:
    """The text to print. json and yaml have one shape: {"ready": ..., "pullers": [...]}, so
    a script reads the same keys with or without -A."""
    if output == "table":
        now = time.time()
        if many:
            return cachetable.render_many(statuses, now=now)
        return cachetable.render_table(statuses[0], now=now)
    document = {
        "ready": all(status.ready for status in statuses),
        "pullers": [status.to_dict() for status in statuses],
    }
    if output == "json":
        return json.dumps(document, indent=2) + "\n"
    return dump_manifest(document)


def _connect(env: Mapping[str, str]) -> Kube:
    return Kube(load_api_client(env.get("KUBECONFIG") or None), retry_for=RETRY_SECONDS)


def _target(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, str]:
    """--namespace/--name, else NAMESPACE/DAEMONSET_NAME as `run` reads them, else defaults."""
    namespace = args.namespace or (env.get("NAMESPACE") or "").strip() or DEFAULT_NAMESPACE
    name = args.name or (env.get("DAEMONSET_NAME") or "").strip() or DEFAULT_NAME
    return namespace, name


def _nodes(kube: Kube) -> list[dict[str, Any]] | None:
    # Nodes are cluster-scoped: a namespaced Role cannot grant them. Without them the status
    # still shows every node that runs a pod, and says what it cannot show.
    try:
        return kube.list_nodes()
    except Forbidden:
        return None


def _summarize(
    kube: Kube, daemonset: dict[str, Any], nodes: list[dict[str, Any]] | None
) -> PullerStatus:
    selector = objects.label_selector((daemonset.get("spec") or {}).get("selector") or {})
    pods = kube.list_pods(objects.metadata(daemonset)["namespace"], selector)
    return cachestatus.summarize(daemonset, pods, nodes)


def _error(message: str) -> None:
    print(f"imagepuller status: {message}", file=sys.stderr)
