"""What a `KubernetesImagePuller` resource may ask of the operator, enforced by the operator.

Creating a resource makes the operator run pods on every selected node: the init image
(`imagePullerImage`) runs `/bin/sh -c cp …`, every listed image runs, with the namespace's pull
secrets and the tolerations asked for. That is what the right to create a DaemonSet grants, and
the admission policy in `manifests/operator` admits a resource only from those who have it. On
a cluster without that policy (or before it is applied) the operator still refuses what no
resource should get by default, each refusal in the resource's own words (`InvalidSpec`):

- an init image other than the allowed ones (the documented default, the Che operator's, and
  the operator's own image);
- a toleration that matches every taint (an empty key with `operator: Exists`), which would put
  the pods on control-plane and `NoExecute`-tainted nodes;
- more images, or more CPU or memory per container or per node, than the ceilings.

Every ceiling is an operator setting (its environment), so an administrator can widen it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from imagepuller.config import Config, ConfigError, Problems
from imagepuller.imageref import check_image_reference
from imagepuller.settings import DEFAULT_KIP_IMAGE
from imagepuller.valueparsers import choice, positive_quantity, quantity_value, whole_number

# The Che / Dev Spaces operator's default `imagePullerImage` (older releases write it).
CHE_OPERATOR_KIP_IMAGE = "quay.io/eclipse/kubernetes-image-puller:next"
ANY = "*"

# (variable, default, what it bounds); the defaults leave room for the Dev Spaces image lists
# at the default requests (a few dozen images of .05 CPU and 10Mi).
DEFAULT_MAX_IMAGES = 200
DEFAULT_MAX_CONTAINER_CPU = "1"
DEFAULT_MAX_CONTAINER_MEMORY = "1Gi"
DEFAULT_MAX_NODE_CPU = "4"
DEFAULT_MAX_NODE_MEMORY = "4Gi"
MAX_IMAGES_RANGE = (1, 5000)

POLICY_VARIABLES = (
    "ALLOWED_PULLER_IMAGES",
    "ALLOW_TOLERATING_EVERY_TAINT",
    "MAX_IMAGES_PER_RESOURCE",
    "MAX_CPU_PER_CONTAINER",
    "MAX_MEMORY_PER_CONTAINER",
    "MAX_CPU_PER_NODE",
    "MAX_MEMORY_PER_NODE",
    "OPERATOR_IMAGE",
)


@dataclass(frozen=True)
class ResourcePolicy:
    # ALLOWED_PULLER_IMAGES: comma-separated `imagePullerImage` values a resource may use, or
    # `*` for any. Default: the documented default, the Che operator's, and OPERATOR_IMAGE.
    allowed_images: frozenset[str] = frozenset({DEFAULT_KIP_IMAGE, CHE_OPERATOR_KIP_IMAGE})
    # ALLOW_TOLERATING_EVERY_TAINT: true lets a toleration with no key and `operator: Exists`
    # through; default false.
    tolerate_every_taint: bool = False
    # MAX_IMAGES_PER_RESOURCE: images (containers) per DaemonSet pod; default 200.
    max_images: int = DEFAULT_MAX_IMAGES
    # MAX_CPU_PER_CONTAINER / MAX_MEMORY_PER_CONTAINER: ceilings on each container's request
    # and limit (cachingCPU*, cachingMemory*); default 1 / 1Gi.
    max_container_cpu: Decimal = Decimal(DEFAULT_MAX_CONTAINER_CPU)
    max_container_memory: Decimal = quantity_value(DEFAULT_MAX_CONTAINER_MEMORY)
    # MAX_CPU_PER_NODE / MAX_MEMORY_PER_NODE: what one resource's pod may reserve on a node
    # (request x images): what other pods can no longer be scheduled on; default 4 / 4Gi.
    max_node_cpu: Decimal = Decimal(DEFAULT_MAX_NODE_CPU)
    max_node_memory: Decimal = quantity_value(DEFAULT_MAX_NODE_MEMORY)

    def problems(self, config: Config) -> list[str]:
        """What ``config`` (read from a resource) asks beyond this policy, in spec words."""
        found: list[str] = []
        if ANY not in self.allowed_images and config.kip_image not in self.allowed_images:
            found.append(
                f"spec.imagePullerImage={config.kip_image!r}: not an image this operator runs "
                f"on every node; expected one of {', '.join(sorted(self.allowed_images))} "
                "(the operator's ALLOWED_PULLER_IMAGES setting)"
            )
        for index, toleration in enumerate(config.tolerations):
            if (
                not self.tolerate_every_taint
                and not toleration.get("key")
                and toleration.get("operator") == "Exists"
            ):
                found.append(
                    f"spec.tolerations item {index}: tolerates every taint (no key, operator "
                    "Exists), which would run the pods on control-plane and NoExecute-tainted "
                    "nodes; name the taint's key (the operator's ALLOW_TOLERATING_EVERY_TAINT "
                    "setting allows it)"
                )
        images = len(config.images)
        if images > self.max_images:
            found.append(
                f"spec.images: {images} images, more than the {self.max_images} this operator "
                "allows per resource (the operator's MAX_IMAGES_PER_RESOURCE setting)"
            )
        cpu = [("cachingCPURequest", config.cpu_request), ("cachingCPULimit", config.cpu_limit)]
        memory = [
            ("cachingMemoryRequest", config.memory_request),
            ("cachingMemoryLimit", config.memory_limit),
        ]
        for fields, ceiling, setting in (
            (cpu, self.max_container_cpu, "MAX_CPU_PER_CONTAINER"),
            (memory, self.max_container_memory, "MAX_MEMORY_PER_CONTAINER"),
        ):
            for field, raw in fields:
                if quantity_value(raw) > ceiling:
                    found.append(
                        f"spec.{field}={raw!r}: more than the {_show(ceiling)} this operator "
                        f"allows per container (the operator's {setting} setting)"
                    )
        for field, raw, ceiling, setting in (
            ("cachingCPURequest", config.cpu_request, self.max_node_cpu, "MAX_CPU_PER_NODE"),
            (
                "cachingMemoryRequest",
                config.memory_request,
                self.max_node_memory,
                "MAX_MEMORY_PER_NODE",
            ),
        ):
            total = quantity_value(raw) * images
            if total > ceiling:
                found.append(
                    f"spec.{field}={raw!r} x {images} images reserves {_show(total)} on every "
                    f"node, more than the {_show(ceiling)} this operator allows per resource "
                    f"(the operator's {setting} setting)"
                )
        return found


def _show(value: Decimal) -> str:
    return format(value.normalize(), "f")


def load_resource_policy(env: Mapping[str, str]) -> ResourcePolicy:
    """The policy the operator's environment sets; ConfigError names every bad variable, read
    with the same parsers (and messages) as every other setting."""
    problems = Problems(env)
    allowed = problems.get("ALLOWED_PULLER_IMAGES", None, _allowed_images)
    if allowed is None:
        allowed = ResourcePolicy().allowed_images | frozenset(
            problems.get("OPERATOR_IMAGE", (), lambda raw: (check_image_reference(raw),))
        )
    policy = ResourcePolicy(
        allowed_images=allowed,
        tolerate_every_taint=problems.get(
            "ALLOW_TOLERATING_EVERY_TAINT", "false", choice(("true", "false"))
        )
        == "true",
        max_images=problems.get(
            "MAX_IMAGES_PER_RESOURCE",
            DEFAULT_MAX_IMAGES,
            whole_number(MAX_IMAGES_RANGE, "images", DEFAULT_MAX_IMAGES),
        ),
        max_container_cpu=problems.get(
            "MAX_CPU_PER_CONTAINER", ResourcePolicy.max_container_cpu, _ceiling("500m")
        ),
        max_container_memory=problems.get(
            "MAX_MEMORY_PER_CONTAINER", ResourcePolicy.max_container_memory, _ceiling("512Mi")
        ),
        max_node_cpu=problems.get("MAX_CPU_PER_NODE", ResourcePolicy.max_node_cpu, _ceiling("2")),
        max_node_memory=problems.get(
            "MAX_MEMORY_PER_NODE", ResourcePolicy.max_node_memory, _ceiling("2Gi")
        ),
    )
    if problems.items:
        raise ConfigError(problems.items)
    return policy


def _allowed_images(raw: str) -> frozenset[str]:
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise ValueError("expected image references separated by commas, or *")
    for item in items:
        if item != ANY:
            check_image_reference(item)
    return frozenset(items)


def _ceiling(example: str) -> Callable[[str], Decimal]:
    return lambda raw: positive_quantity(raw, f"expected a positive quantity such as {example}")
