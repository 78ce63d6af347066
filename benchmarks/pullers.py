"""KubernetesImagePuller resources as the operator benchmarks create and wait for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from imagepuller.resource import GROUP, KIND, PLURAL, VERSION
from tests.waiting import wait_until

CRD = Path(__file__).resolve().parent.parent / "manifests" / "operator" / "crd.yaml"


def install_crd(extensions: Any) -> None:
    """Create the CRD and wait until the API serves it."""
    extensions.create_custom_resource_definition(yaml.safe_load(CRD.read_text()))
    wait_until(
        lambda: any(
            c.type == "Established" and c.status == "True"
            for c in extensions.read_custom_resource_definition(
                f"{PLURAL}.{GROUP}"
            ).status.conditions
            or []
        ),
        60,
        "the CRD being established",
    )


def create_puller(
    custom: Any, namespace: str, images: str, name: str = "cache", *, daemonset: str = ""
) -> None:
    """A resource caching ``images``; ``daemonset``: its spec.daemonsetName (default: none)."""
    spec = {"images": images, **({"daemonsetName": daemonset} if daemonset else {})}
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": name},
            "spec": spec,
        },
    )


def is_ready(resource: dict[str, Any], nodes: int) -> bool:
    """Its status says Ready, on every one of ``nodes`` nodes."""
    status = resource.get("status") or {}
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return conditions.get("Ready") == "True" and status.get("nodes") == {
        "desired": nodes,
        "ready": nodes,
    }


def list_pullers(custom: Any) -> list[dict[str, Any]]:
    return custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
