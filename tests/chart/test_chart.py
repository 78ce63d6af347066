"""The chart as helm sees it: `helm lint --strict`, every documented values example rendered,
values.schema.json refusing bad values by name with the rules of `imagepuller check`, and the
chart rendering the same objects as the kustomize sets (manifests/kubernetes, manifests/operator,
manifests/monitoring), so that the two cannot drift."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagepuller.config import ConfigError, load_config
from imagepuller.resource import SPEC_FIELDS
from localcluster.binaries import find_kubectl
from tests.chart.helmchart import CHART, EXAMPLES, IMAGES, ROOT, by_kind_and_name, helm, render

MANIFESTS = ROOT / "manifests"
DOCS = ROOT / "docs" / "helm.md"


def kustomize(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(find_kubectl(build=True)), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def comparable(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Objects by kind and name, without the Namespace object and metadata.namespace (kustomize
    writes the namespace into each object, `helm install -n` gives it at apply time)."""
    kept = []
    for obj in objects:
        if obj["kind"] == "Namespace":
            continue
        obj = json.loads(json.dumps(obj))
        obj["metadata"].pop("namespace", None)
        kept.append(obj)
    return by_kind_and_name(kept)


def example_commands() -> dict[Path, list[Path]]:
    """Each example and the values files its own header installs it with (`-f ...`)."""
    found = {}
    for example in sorted(EXAMPLES.glob("*.yaml")):
        header = "".join(line for line in example.read_text().splitlines(True) if line[:1] == "#")
        files = re.findall(r"-f charts/imagepuller/examples/(\S+\.yaml)", header)
        assert example.name in files, f"{example.name}: its header shows no `helm install -f`"
        found[example] = [EXAMPLES / name for name in files]
    return found


# --- lint and the documented examples --------------------------------------------------------


def test_helm_lint_strict_passes_for_the_defaults_and_every_example(helm_tools):
    runs = [["--set", f"puller.config.IMAGES={IMAGES}"]]
    runs += [
        [arg for path in files for arg in ("-f", str(path))]
        for files in example_commands().values()
    ]
    for extra in runs:
        result = helm(helm_tools, "lint", "--strict", str(CHART), *extra)
        assert result.returncode == 0, (extra, result.stdout + result.stderr)
        assert "0 chart(s) failed" in result.stdout


def test_every_documented_values_example_renders_and_is_in_the_docs(helm_tools):
    documented = DOCS.read_text()
    for example, files in example_commands().items():
        assert f"examples/{example.name}" in documented, f"docs/helm.md does not show {example}"
        objects = render(helm_tools, files=tuple(files))
        kinds = {o["kind"] for o in objects}
        assert "Deployment" in kinds, example
        for obj in objects:
            assert obj.get("apiVersion") and obj["metadata"].get("name"), (example, obj)


def test_the_operator_example_makes_the_documented_resource(helm_tools):
    objects = by_kind_and_name(render(helm_tools, files=(EXAMPLES / "operator.yaml",)))
    resource = objects[("KubernetesImagePuller", "k8s-image-puller-images")]
    documented = yaml.safe_load((MANIFESTS / "operator" / "example.yaml").read_text())
    assert resource["metadata"]["namespace"] == documented["metadata"]["namespace"]
    assert resource["spec"] == documented["spec"]


def test_openshift_example_sets_no_uid(helm_tools):
    objects = by_kind_and_name(render(helm_tools, files=(EXAMPLES / "puller-openshift.yaml",)))
    pod = objects[("Deployment", "kubernetes-image-puller")]["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


# --- the schema: refused by name, with the rules of `imagepuller check` ---------------------

CONFIGMAP = yaml.safe_load((MANIFESTS / "kubernetes" / "configmap.yaml").read_text())["data"]

# (setting, value): what both values.schema.json and `imagepuller check` accept.
ACCEPTED = [
    ("CACHING_INTERVAL_HOURS", "0.5"),
    ("CACHING_INTERVAL_HOURS", "24"),
    ("CACHING_MEMORY_LIMIT", "1Gi"),
    ("CACHING_MEMORY_REQUEST", "15M"),
    ("CACHING_CPU_LIMIT", "200m"),
    ("CACHING_CPU_REQUEST", "0.01"),
    ("REFRESH_MAX_SURGE", "5"),
    ("REFRESH_MAX_SURGE", "100%"),
    ("REFRESH_STRATEGY", "recreate"),
    ("READY_TIMEOUT", "1h30m"),
    ("READY_TIMEOUT", "300"),
    ("LOG_LEVEL", "debug"),
    ("DAEMONSET_NAME", "my-puller-2"),
    ("IMAGE_PULL_SECRETS", "pull-a;pull-b"),
    ("IMAGES_FROM_MAX_IMAGES", "1000"),
    ("IMAGES_FROM_TIMEOUT", "30s"),
    ("IMAGES_FROM_MAX_BYTES", "500Ki"),
    ("NODE_SELECTOR", '{"kubernetes.io/os": "linux"}'),
    ("TOLERATIONS", '[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]'),
    ("KIP_IMAGE", "quay.io/org/kip@sha256:" + "a" * 64),
    ("IMAGES", "java = quay.io/x/java:1 ; node=quay.io/x/node:2"),
]
# (setting, value): refused by both, the schema naming /puller/config/<setting>.
REFUSED = [
    ("CACHING_INTERVAL_HOURS", "soon"),
    ("CACHING_INTERVAL_HOURS", "-1"),
    ("CACHING_MEMORY_LIMIT", "lots"),
    ("CACHING_MEMORY_LIMIT", "-5Mi"),
    ("CACHING_CPU_REQUEST", "fast"),
    ("REFRESH_MAX_SURGE", "200%"),
    ("REFRESH_MAX_SURGE", "0"),
    ("REFRESH_MAX_SURGE", "ten"),
    ("REFRESH_STRATEGY", "sometimes"),
    ("READY_TIMEOUT", "soon"),
    ("LOG_LEVEL", "loud"),
    ("DAEMONSET_NAME", "Bad_Name"),
    ("DAEMONSET_NAME", "x" * 64),
    ("IMAGES", "java"),
    ("IMAGES", "Java=quay.io/x/java:1;"),
    ("IMAGE_PULL_SECRETS", "Bad Secret"),
    ("IMAGES_FROM_MAX_IMAGES", "1001"),
    ("IMAGES_FROM_MAX_IMAGES", "0"),
    ("IMAGES_FROM_TIMEOUT", "soon"),
    ("NODE_SELECTOR", "[1]"),
    ("TOLERATIONS", "{}"),
    ("KIP_IMAGE", "has space:1"),
]


def check_refuses(setting: str, value: str) -> bool:
    """Whether `imagepuller check` refuses the ConfigMap with this one value changed, naming it."""
    env = {**CONFIGMAP, "IMAGES": IMAGES, setting: value}
    try:
        load_config(env)
    except ConfigError as err:
        return any(setting in problem for problem in err.problems)
    return False


def _template_with(tools, values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`helm template` with ``values`` as a values file (typed as YAML, unlike --set)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(values, file)
        file.flush()
        return helm(tools, "template", "x", str(CHART), "-n", "k8s-image-puller", "-f", file.name)


def schema_answer(tools, setting: str, value: str) -> subprocess.CompletedProcess[str]:
    return _template_with(tools, {"puller": {"config": {"IMAGES": IMAGES, setting: value}}})


@pytest.mark.parametrize(("setting", "value"), ACCEPTED)
def test_the_schema_accepts_what_check_accepts(helm_tools, setting, value):
    assert not check_refuses(setting, value), "the case itself is wrong"
    result = schema_answer(helm_tools, setting, value)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("setting", "value"), REFUSED)
def test_the_schema_refuses_what_check_refuses_and_names_the_value(helm_tools, setting, value):
    assert check_refuses(setting, value), "the case itself is wrong"
    result = schema_answer(helm_tools, setting, value)
    assert result.returncode != 0
    assert f"at '/puller/config/{setting}'" in result.stderr, result.stderr


def test_every_problem_is_named_at_once_and_unknown_keys_are_refused(helm_tools):
    values = {
        "puller": {"config": {"IMAGES": IMAGES, "LOG_LEVEL": "loud", "BOGUS": "1"}},
        "metricsPort": 0,
        "mode": "both",
    }
    result = _template_with(helm_tools, values)
    assert result.returncode != 0
    for named in ("/puller/config/LOG_LEVEL", "/metricsPort", "/mode", "'BOGUS' not allowed"):
        assert named in result.stderr, result.stderr


def test_a_resource_spec_is_checked_with_the_same_rules_in_spec_words(helm_tools):
    values = {
        "mode": "operator",
        "kubernetesImagePullers": [
            {
                "name": "images",
                "namespace": "team-a",
                "spec": {"images": "java", "cachingIntervalHours": 2, "nodeSelector": "[1]"},
            }
        ],
    }
    result = _template_with(helm_tools, values)
    assert result.returncode != 0
    for field in ("images", "cachingIntervalHours", "nodeSelector"):
        assert f"/kubernetesImagePullers/0/spec/{field}" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "puller.config.IMAGES is required (or puller.config.IMAGES_FROM)"),
        (
            {"puller": {"config": {"IMAGES": IMAGES, "NAMESPACE": "elsewhere"}}},
            'puller.config.NAMESPACE="elsewhere": expected empty or the release namespace',
        ),
        (
            {"puller": {"config": {"IMAGES_FROM": "https://registry.example.com/list.txt"}}},
            "puller.imagesFromHosts is empty",
        ),
    ],
)
def test_what_the_schema_cannot_say_the_templates_refuse_by_name(helm_tools, values, message):
    result = _template_with(helm_tools, values)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_the_schema_knows_exactly_the_configmap_keys_and_the_crd_spec_fields():
    schema = json.loads((CHART / "values.schema.json").read_text())
    config = schema["properties"]["puller"]["properties"]["config"]["properties"]
    assert set(config) == set(CONFIGMAP)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["puller"]["config"]) == set(CONFIGMAP)
    spec = schema["properties"]["kubernetesImagePullers"]["items"]["properties"]["spec"]
    crd = yaml.safe_load((MANIFESTS / "operator" / "crd.yaml").read_text())
    served = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert set(spec["properties"]) == set(served["properties"])
    assert set(SPEC_FIELDS) <= set(spec["properties"])


# --- the chart and the kustomize sets render the same objects -------------------------------


def test_the_single_puller_is_the_kustomize_set(helm_tools):
    kustomized = kustomize(MANIFESTS / "kubernetes")
    for obj in kustomized:
        if obj["kind"] == "ConfigMap":
            obj["data"]["IMAGES"] = IMAGES
    chart = comparable(render(helm_tools, f"puller.config.IMAGES={IMAGES}"))
    assert chart == comparable(kustomized)


def test_the_operator_is_the_kustomize_set(helm_tools):
    chart = comparable(render(helm_tools, "mode=operator", namespace="imagepuller-operator"))
    assert chart == comparable(kustomize(MANIFESTS / "operator"))


@pytest.mark.parametrize("mode", ["puller", "operator"])
def test_the_monitoring_pack_is_the_kustomize_set(helm_tools, mode):
    namespace = {"puller": "k8s-image-puller", "operator": "imagepuller-operator"}[mode]
    chart = comparable(
        render(
            helm_tools,
            f"mode={mode}",
            f"puller.config.IMAGES={IMAGES}",
            "monitoring.enabled=true",
            namespace=namespace,
        )
    )
    pack = comparable(kustomize(MANIFESTS / "monitoring" / mode))
    assert {key: chart[key] for key in pack} == pack
    # Nothing of the pack without monitoring.enabled.
    plain = comparable(render(helm_tools, f"mode={mode}", f"puller.config.IMAGES={IMAGES}"))
    assert not set(plain) & set(pack)


def test_the_crd_is_kept_on_uninstall_only_when_asked(helm_tools):
    def crd(*values: str) -> dict[str, Any] | None:
        found = by_kind_and_name(render(helm_tools, "mode=operator", *values))
        return found.get(("CustomResourceDefinition", "kubernetesimagepullers.che.eclipse.org"))

    assert "annotations" not in crd()["metadata"]
    assert crd("operator.crd.keep=true")["metadata"]["annotations"] == {
        "helm.sh/resource-policy": "keep"
    }
    assert crd("operator.crd.install=false") is None


def test_the_charts_app_version_is_the_packages():
    from imagepuller import __version__

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == __version__
