"""The operator's own limits on what a KubernetesImagePuller may ask, for clusters without the
admission policy: each refusal in the resource's words, every one at once."""

from __future__ import annotations

import pytest

from imagepuller.config import ConfigError
from imagepuller.policy import CHE_OPERATOR_KIP_IMAGE, load_resource_policy
from imagepuller.resource import config_from_resource

DOC_IMAGES = "java=quay.io/eclipse/che-java17-maven:next;node=docker.io/library/node:20-alpine;"


def resource(**spec: str) -> dict:
    return {
        "metadata": {"namespace": "team-a", "name": "cache"},
        "spec": {"images": DOC_IMAGES, **spec},
    }


def problems(policy, **spec: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        config_from_resource(resource(**spec), policy)
    return raised.value.problems


def test_the_documented_and_the_che_operators_resources_pass_by_default():
    policy = load_resource_policy({})
    assert config_from_resource(resource(), policy).kip_image
    che = resource(imagePullerImage=CHE_OPERATOR_KIP_IMAGE, tolerations="[]")
    assert config_from_resource(che, policy).kip_image == CHE_OPERATOR_KIP_IMAGE
    own = load_resource_policy({"OPERATOR_IMAGE": "registry.local/imagepuller:1.0"})
    assert config_from_resource(resource(imagePullerImage="registry.local/imagepuller:1.0"), own)


def test_an_init_image_run_on_every_node_must_be_an_allowed_one():
    (problem,) = problems(load_resource_policy({}), imagePullerImage="quay.io/attacker/sh:1")
    assert problem.startswith("spec.imagePullerImage='quay.io/attacker/sh:1': not an image")
    assert "ALLOWED_PULLER_IMAGES" in problem and CHE_OPERATOR_KIP_IMAGE in problem
    anything = load_resource_policy({"ALLOWED_PULLER_IMAGES": "*"})
    assert config_from_resource(resource(imagePullerImage="quay.io/attacker/sh:1"), anything)


def test_a_toleration_of_every_taint_is_refused_unless_allowed():
    every = '[{"operator": "Exists"}]'
    (problem,) = problems(load_resource_policy({}), tolerations=every)
    assert "spec.tolerations item 0: tolerates every taint" in problem
    named = '[{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]'
    assert config_from_resource(resource(tolerations=named), load_resource_policy({}))
    allowed = load_resource_policy({"ALLOW_TOLERATING_EVERY_TAINT": "true"})
    assert config_from_resource(resource(tolerations=every), allowed)


def test_ceilings_per_container_and_per_node_are_each_named():
    found = problems(
        load_resource_policy({}),
        cachingCPURequest="31",
        cachingCPULimit="31",
        cachingMemoryRequest="250Gi",
        cachingMemoryLimit="250Gi",
    )
    text = "\n".join(found)
    for field in ("cachingCPURequest", "cachingCPULimit", "cachingMemoryRequest"):
        assert f"spec.{field}=" in text
    assert "MAX_CPU_PER_CONTAINER" in text and "MAX_MEMORY_PER_CONTAINER" in text
    assert "reserves 62 on every node" in text and "MAX_CPU_PER_NODE" in text
    many = ";".join(f"i{n}=quay.io/i/{n}:1" for n in range(201))
    (problem,) = problems(load_resource_policy({}), images=many, cachingCPURequest=".01")
    assert "201 images, more than the 200" in problem


def test_bad_policy_settings_are_all_reported_by_name():
    with pytest.raises(ConfigError) as raised:
        load_resource_policy(
            {
                "ALLOWED_PULLER_IMAGES": "UPPER/case:1",
                "ALLOW_TOLERATING_EVERY_TAINT": "yes",
                "MAX_IMAGES_PER_RESOURCE": "١٢",
                "MAX_CPU_PER_NODE": "-1",
            }
        )
    text = "\n".join(raised.value.problems)
    for variable in (
        "ALLOWED_PULLER_IMAGES",
        "ALLOW_TOLERATING_EVERY_TAINT",
        "MAX_IMAGES_PER_RESOURCE",
        "MAX_CPU_PER_NODE",
    ):
        assert variable in text


def test_the_docs_table_names_every_policy_variable_with_its_default():
    from pathlib import Path

    from imagepuller import policy

    docs = (Path(__file__).resolve().parents[2] / "docs" / "operator.md").read_text()
    rows = [line for line in docs.splitlines() if line.startswith("| `")]
    for variable in policy.POLICY_VARIABLES:
        assert any(f"`{variable}`" in row for row in rows), variable
    row = {v: r for r in rows for v in policy.POLICY_VARIABLES if r.startswith(f"| `{v}`")}
    assert f"`{policy.DEFAULT_MAX_IMAGES}`" in row["MAX_IMAGES_PER_RESOURCE"]
    assert (
        f"`{policy.DEFAULT_MAX_CONTAINER_CPU}` / `{policy.DEFAULT_MAX_CONTAINER_MEMORY}`"
        in (row["MAX_CPU_PER_CONTAINER"])
    )
    assert (
        f"`{policy.DEFAULT_MAX_NODE_CPU}` / `{policy.DEFAULT_MAX_NODE_MEMORY}`"
        in (row["MAX_CPU_PER_NODE"])
    )
    for image in policy.ResourcePolicy().allowed_images:
        assert image in row["ALLOWED_PULLER_IMAGES"]
