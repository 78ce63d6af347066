"""The KubernetesImagePuller resource: its CRD serves the community operator's facts, and its
spec is read through the same table and validators as the ConfigMap."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from imagepuller.config import ConfigError, load_config
from imagepuller.resource import (
    ACCEPTED_UNUSED,
    GROUP,
    KIND,
    PLURAL,
    SPEC_FIELDS,
    SPEC_SETTINGS,
    VERSION,
    config_from_resource,
)
from imagepuller.settings import SETTINGS

CRD = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "manifests" / "operator" / "crd.yaml").read_text()
)
# The community operator's spec fields (operator.md), every one an optional string.
COMMUNITY_SPEC_FIELDS = {
    "configMapName", "deploymentName", "daemonsetName", "images", "cachingIntervalHours",
    "cachingMemoryRequest", "cachingMemoryLimit", "cachingCPURequest", "cachingCPULimit",
    "nodeSelector", "affinity", "tolerations", "imagePullSecrets", "imagePullerImage",
}  # fmt: skip


def resource(namespace: str = "k8s-image-puller", **spec: str) -> dict:
    return {"metadata": {"name": "k8s-image-puller-images", "namespace": namespace}, "spec": spec}


def test_the_crd_serves_the_community_operators_resource():
    spec = CRD["spec"]
    assert CRD["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert spec["group"] == GROUP == "che.eclipse.org"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": KIND,
        "listKind": f"{KIND}List",
        "plural": PLURAL,
        "singular": "kubernetesimagepuller",
    }  # no short names: the community operator has none
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert set(schema["properties"]) == COMMUNITY_SPEC_FIELDS == SPEC_FIELDS
    assert all(field["type"] == "string" for field in schema["properties"].values())
    # Nothing the Che operator's full updates could trip over: no required field, no default,
    # no pattern.
    for field in schema["properties"].values():
        assert not {"default", "pattern", "enum", "format"} & set(field)
    assert "required" not in schema


def test_printer_columns_read_the_status():
    (version,) = CRD["spec"]["versions"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Nodes": ".status.nodes.ready",
        "Desired": ".status.nodes.desired",
        "Images": ".status.images",
        "Last refresh": ".status.lastRefreshTime",
        "Age": ".metadata.creationTimestamp",
    }
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"imagePullerImage", "conditions", "observedGeneration", "nodes", "images",
            "lastRefreshTime", "failures", "failuresTotal"} == set(status)  # fmt: skip
    assert status["failures"]["maxItems"] == 20


def test_every_spec_field_is_a_setting_of_the_one_table():
    assert set(SPEC_SETTINGS.values()) <= SETTINGS
    assert {"configMapName", "deploymentName"} == ACCEPTED_UNUSED


def test_the_documentations_resource_reads_as_the_configmap_would():
    images = "java=quay.io/eclipse/che-java17-maven:next;node=docker.io/library/node:20-alpine;"
    config = config_from_resource(resource(images=images))
    assert config == load_config({"IMAGES": images, "NAMESPACE": "k8s-image-puller"})


def test_the_che_operators_spec_is_accepted():
    config = config_from_resource(
        resource(
            "openshift-devspaces",
            images="code=quay.io/che-incubator/che-code:latest;",
            configMapName="k8s-image-puller",
            deploymentName="kubernetes-image-puller",
            imagePullerImage="quay.io/eclipse/kubernetes-image-puller:next",
            cachingCPURequest=".1",
            cachingCPULimit=".5",
            tolerations='[{"operator": "Exists"}]',
        )
    )
    assert config.namespace == "openshift-devspaces"
    assert config.kip_image == "quay.io/eclipse/kubernetes-image-puller:next"
    assert (config.cpu_request, config.cpu_limit) == (".1", ".5")
    assert config.tolerations == ({"operator": "Exists"},)


def test_namespace_is_always_the_resources_own():
    config = config_from_resource(resource("team-a", images="a=quay.io/a:1"))
    assert config.namespace == "team-a"


def test_every_problem_is_reported_in_the_resources_words():
    with pytest.raises(ConfigError) as caught:
        config_from_resource(
            resource(
                images="a=quay.io/a:1;a=quay.io/b:1",
                cachingMemoryRequest="30Mi",
                cachingMemoryLimit="20Mi",
                cachingCPULimit="lots",
                nodeSelector="{not json",
            )
        )
    problems = caught.value.problems
    assert len(problems) == 4
    text = "\n".join(problems)
    assert "spec.images entry 2" in text
    assert "spec.cachingMemoryRequest='30Mi' is more than spec.cachingMemoryLimit='20Mi'" in text
    assert "spec.cachingCPULimit='lots'" in text and "spec.nodeSelector=" in text
    assert "CACHING_" not in text and "NODE_SELECTOR" not in text


def test_a_missing_images_field_is_named_as_the_spec_field():
    with pytest.raises(ConfigError) as caught:
        config_from_resource(resource())
    assert caught.value.problems[0].startswith("spec.images is required")


def test_a_spec_that_is_not_an_object_is_a_problem_not_a_crash():
    with pytest.raises(ConfigError, match="spec: expected an object"):
        config_from_resource({"metadata": {"namespace": "x"}, "spec": "images"})


def test_a_value_that_is_not_a_string_is_refused_with_the_value_shown():
    with pytest.raises(ConfigError) as caught:
        config_from_resource(resource(images="a=quay.io/a:1", cachingIntervalHours=2))  # type: ignore[arg-type]
    assert caught.value.problems == [
        "spec.cachingIntervalHours=2: expected a string (every spec field is one, JSON included)"
    ]


@pytest.mark.parametrize("field", sorted(SPEC_SETTINGS))
def test_each_fields_problem_is_named_by_its_field(field):
    # "{" is no valid value of any field; each problem must name the field, never a variable.
    spec = {"images": "a=quay.io/a:1", field: "{"}
    with pytest.raises(ConfigError) as caught:
        config_from_resource(resource(**spec))
    (problem,) = caught.value.problems
    assert problem.startswith(f"spec.{field}=") or problem.startswith(f"spec.{field} entry ")
    assert SPEC_SETTINGS[field] not in problem
