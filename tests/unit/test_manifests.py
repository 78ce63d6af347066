"""The install manifests, checked without a cluster.

OpenShift templates (manifests/openshift/) are processed with tests.templates.process_template,
the `oc process` emulation; the plain-Kubernetes install (manifests/kubernetes/) is rendered with
`kubectl kustomize` and must match the templates' defaults.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imagepuller.config import load_config
from imagepuller.daemonset import build_daemonset
from imagepuller.settings import ENV_ONLY_VARIABLES

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # tests/unit has no __init__.py; make `tests.templates` importable
    sys.path.insert(0, str(ROOT))

from tests.templates import (  # noqa: E402
    TemplateError,
    load_template,
    parameter_defaults,
    process_template,
)

OPENSHIFT = ROOT / "manifests" / "openshift"
KUBERNETES = ROOT / "manifests" / "kubernetes"
APP = OPENSHIFT / "app.yaml"
CONFIGMAP = OPENSHIFT / "configmap.yaml"
SERVICEACCOUNT = OPENSHIFT / "serviceaccount.yaml"

# Product documentation, section 3.6.1, tables 3.37-3.39: parameter -> documented default.
DOC_TABLES = {
    APP: {  # table 3.37
        "DEPLOYMENT_NAME": "kubernetes-image-puller",
        "IMAGE": "registry.redhat.io/devspaces/imagepuller-rhel8",
        "IMAGE_TAG": "latest",
        "SERVICEACCOUNT_NAME": "kubernetes-image-puller",
    },
    CONFIGMAP: {  # table 3.38 (IMAGES: the documented `{}` is no `name=image;` list; see below)
        "CACHING_CPU_LIMIT": ".2",
        "CACHING_CPU_REQUEST": ".05",
        "CACHING_INTERVAL_HOURS": "1",
        "CACHING_MEMORY_LIMIT": "20Mi",
        "CACHING_MEMORY_REQUEST": "10Mi",
        "DAEMONSET_NAME": "kubernetes-image-puller",
        "DEPLOYMENT_NAME": "kubernetes-image-puller",
        "IMAGES": None,
        "NAMESPACE": "k8s-image-puller",
        "NODE_SELECTOR": "{}",
    },
    SERVICEACCOUNT: {  # table 3.39
        "SERVICEACCOUNT_NAME": "kubernetes-image-puller",
        "KIP_IMAGE": "registry.redhat.io/devspaces/imagepuller-rhel8:latest",
    },
}

# Settings of the original puller beyond the documented tables.
EXTRAS = {
    APP: {
        "CONFIGMAP_NAME": "kubernetes-image-puller",
        "DEPLOYMENT_CPU_REQUEST": "100m",
        "DEPLOYMENT_MEMORY_REQUEST": "96Mi",
        "DEPLOYMENT_CPU_LIMIT": "500m",
        "DEPLOYMENT_MEMORY_LIMIT": "256Mi",
    },
    CONFIGMAP: {
        "CONFIGMAP_NAME": "kubernetes-image-puller",
        "IMAGE_PULL_SECRETS": "",
        "READY_TIMEOUT": "5m",
        "LOG_LEVEL": "info",
        "AFFINITY": "{}",
        "TOLERATIONS": "[]",
        "KIP_IMAGE": "registry.redhat.io/devspaces/imagepuller-rhel8:latest",
        "DAEMONSET_ANNOTATIONS": "{}",
        "REFRESH_STRATEGY": "rolling",
        "REFRESH_MAX_SURGE": "10%",
        "IMAGES_FROM": "",
        "IMAGES_FROM_CA_BUNDLE": "",
        "IMAGES_FROM_TIMEOUT": "10s",
        "IMAGES_FROM_MAX_IMAGES": "100",
        "IMAGES_FROM_MAX_BYTES": "1Mi",
    },
    # The Role's rule on the ConfigMap names it.
    SERVICEACCOUNT: {"CONFIGMAP_NAME": "kubernetes-image-puller"},
}


def expected_rules(configmap: str = "kubernetes-image-puller") -> list[dict]:
    return [
        {"apiGroups": ["apps"], "resources": ["daemonsets"],
         "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [configmap],
         "verbs": ["get", "list", "watch"]},
    ]  # fmt: skip


# The Deployment's selector: `component: controller` keeps it off the DaemonSet's pods, which
# share name and instance with the defaults (DAEMONSET_NAME == DEPLOYMENT_NAME).
DEPLOYMENT_SELECTOR = {
    "app.kubernetes.io/name": "kubernetes-image-puller",
    "app.kubernetes.io/instance": "kubernetes-image-puller",
    "app.kubernetes.io/component": "controller",
}

CONFIG_KEYS = {
    "IMAGES", "DAEMONSET_NAME", "DEPLOYMENT_NAME", "NAMESPACE", "CACHING_INTERVAL_HOURS",
    "CACHING_MEMORY_REQUEST", "CACHING_MEMORY_LIMIT", "CACHING_CPU_REQUEST", "CACHING_CPU_LIMIT",
    "NODE_SELECTOR", "AFFINITY", "TOLERATIONS", "IMAGE_PULL_SECRETS", "KIP_IMAGE",
    "DAEMONSET_ANNOTATIONS", "READY_TIMEOUT", "LOG_LEVEL", "REFRESH_STRATEGY", "REFRESH_MAX_SURGE",
    "IMAGES_FROM", "IMAGES_FROM_CA_BUNDLE", "IMAGES_FROM_TIMEOUT", "IMAGES_FROM_MAX_IMAGES",
    "IMAGES_FROM_MAX_BYTES",
}  # fmt: skip

TEMPLATES = [APP, CONFIGMAP, SERVICEACCOUNT]


def _by_kind(objects: list[dict]) -> dict[str, dict]:
    kinds = [o["kind"] for o in objects]
    assert len(kinds) == len(set(kinds)), kinds
    return {o["kind"]: o for o in objects}


def _all_objects(params: dict[str, dict[str, str]] | None = None) -> dict[str, dict]:
    params = params or {}
    objects: list[dict] = []
    for path in TEMPLATES:
        objects += process_template(path, params.get(path.name, {}))
    return _by_kind(objects)


def _walk_strings(node):
    if isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from _walk_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk_strings(v)
    elif isinstance(node, str):
        yield node


# --- The templates' parameters ------------------------------------------------------------


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_is_an_openshift_template(path: Path) -> None:
    tpl = load_template(path)
    assert tpl["apiVersion"] == "template.openshift.io/v1"
    assert tpl["kind"] == "Template"
    assert tpl["metadata"]["name"]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_documented_parameters_have_documented_defaults(path: Path) -> None:
    defaults = parameter_defaults(path)
    for name, documented in DOC_TABLES[path].items():
        assert name in defaults, f"{path.name}: documented parameter {name} is not declared"
        if documented is not None:
            assert defaults[name] == documented, name


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_declares_exactly_documented_and_extra_parameters(path: Path) -> None:
    defaults = parameter_defaults(path)
    expected = {**DOC_TABLES[path], **EXTRAS[path]}
    assert set(defaults) == set(expected)
    for name, value in EXTRAS[path].items():
        assert defaults[name] == value, name


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_parameter_values_are_strings(path: Path) -> None:
    # `.2` unquoted would be a float in YAML, which `oc process` refuses.
    for p in load_template(path)["parameters"]:
        assert isinstance(p.get("value", ""), str), p
        assert p.get("description"), f"{p['name']} has no description"


def test_images_default_is_empty_not_the_documented_json() -> None:
    # The documentation's `{}` is not a `name=image;` list. Empty is no valid setting either:
    # the controller exits with "IMAGES is required" until it is set, and the text says so.
    assert parameter_defaults(CONFIGMAP)["IMAGES"] == ""
    (images,) = [p for p in load_template(CONFIGMAP)["parameters"] if p["name"] == "IMAGES"]
    assert "IMAGES is required" in images["description"]
    assert "nothing is pulled" not in images["description"]
    kube_comment = (KUBERNETES / "configmap.yaml").read_text()
    assert "IMAGES is required" in kube_comment
    assert "nothing is pulled" not in kube_comment


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_parameter_is_accepted_with_p(path: Path) -> None:
    overrides = {name: f"x-{name.lower()}" for name in parameter_defaults(path)}
    objects = process_template(path, overrides)
    strings = list(_walk_strings(objects))
    assert not any("${" in s for s in strings), "unresolved reference"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_no_reference_to_an_undeclared_parameter(path: Path) -> None:
    declared = set(parameter_defaults(path))
    for s in _walk_strings(load_template(path)["objects"]):
        for part in s.split("${")[1:]:
            name = part.lstrip("{").split("}")[0]
            assert name in declared, f"{path.name}: ${{{name}}} is not a parameter"


@pytest.mark.parametrize("path", [APP, CONFIGMAP], ids=lambda p: p.name)
def test_every_parameter_is_used(path: Path) -> None:
    # serviceaccount.yaml declares KIP_IMAGE only because the documentation's table lists it.
    text = "\n".join(_walk_strings(load_template(path)["objects"]))
    for name in parameter_defaults(path):
        assert f"${{{name}}}" in text, f"{path.name}: {name} is declared but never used"


# --- The objects ----------------------------------------------------------------------------


def test_every_template_renders_with_defaults() -> None:
    objs = _all_objects()
    assert set(objs) == {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment"}
    for obj in objs.values():
        assert obj["metadata"]["name"] == "kubernetes-image-puller"
        assert "namespace" not in obj["metadata"], "oc apply puts objects in the current project"
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "kubernetes-image-puller"


def test_configmap_holds_every_setting_as_a_string() -> None:
    cm = _all_objects()["ConfigMap"]
    assert set(cm["data"]) == CONFIG_KEYS
    assert all(isinstance(v, str) for v in cm["data"].values())
    for key in CONFIG_KEYS:
        assert cm["data"][key] == parameter_defaults(CONFIGMAP)[key]


def test_configmap_defaults_are_the_code_defaults() -> None:
    data = _all_objects()["ConfigMap"]["data"]
    from_configmap = load_config({**data, "IMAGES": "a=quay.io/a:1"})
    assert from_configmap == load_config({"IMAGES": "a=quay.io/a:1"})
    assert (from_configmap.refresh_strategy, from_configmap.refresh_max_surge) == ("rolling", "10%")


def test_configmap_overrides() -> None:
    images = "java=quay.io/eclipse/java:1;node=quay.io/eclipse/node:2;"
    cm = process_template(CONFIGMAP, {"IMAGES": images, "CACHING_INTERVAL_HOURS": "5"})[0]
    assert cm["data"]["IMAGES"] == images
    assert cm["data"]["CACHING_INTERVAL_HOURS"] == "5"


def test_deployment() -> None:
    dep = _all_objects()["Deployment"]
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "kubernetes-image-puller"
    assert spec["selector"]["matchLabels"] == DEPLOYMENT_SELECTOR
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert pod["serviceAccountName"] == "kubernetes-image-puller"
    assert pod.get("automountServiceAccountToken", True), "the controller needs its token"
    (container,) = pod["containers"]
    assert container["image"] == "registry.redhat.io/devspaces/imagepuller-rhel8:latest"
    # No command or args: the image's own entrypoint runs, so the documented default IMAGE
    # (whose entrypoint is not `imagepuller`) and ours (ENTRYPOINT imagepuller, CMD run) both work.
    assert "command" not in container and "args" not in container
    assert container["envFrom"] == [{"configMapRef": {"name": "kubernetes-image-puller"}}]
    env = {e["name"]: e for e in container["env"]}
    assert env["DEPLOYMENT_NAME"]["value"] == dep["metadata"]["name"]
    # The ConfigMap the controller reads and watches through the API is the one of envFrom.
    assert env["CONFIGMAP_NAME"]["value"] == container["envFrom"][0]["configMapRef"]["name"]
    assert env["CONFIGMAP_NAME"]["value"] == _all_objects()["ConfigMap"]["metadata"]["name"]
    # Process settings come from `env:` (which wins over envFrom), and load as valid settings.
    assert set(env) == {
        "DEPLOYMENT_NAME", "CONFIGMAP_NAME", "POD_NAMESPACE", "POD_NAME", "METRICS_PORT"
    }  # fmt: skip
    assert set(env) <= ENV_ONLY_VARIABLES
    config = load_config(
        {"IMAGES": "a=quay.io/a:1", **{n: e["value"] for n, e in env.items() if "value" in e}}
    )
    assert config.configmap_name == "kubernetes-image-puller"
    # The endpoints' port is the named port the probes use; no hostPort.
    (port,) = container["ports"]
    assert port == {"name": "metrics", "containerPort": config.metrics_port, "protocol": "TCP"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # The kubelet restarts a stuck controller only after the controller says it is stuck
    # (HEALTHZ_STUCK_AFTER), and then within a minute: period x failures.
    live = container["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] <= 60
    assert live["timeoutSeconds"] < live["periodSeconds"]
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "96Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }


def _assert_restricted(pod: dict) -> None:
    """The `restricted` Pod Security Standard, as far as a pod spec shows it."""
    psc = pod.get("securityContext", {})
    assert psc.get("runAsNonRoot") is True
    assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for vol in pod.get("volumes", []):
        assert set(vol) - {"name"} <= {
            "emptyDir", "configMap", "secret", "projected", "downwardAPI",
            "persistentVolumeClaim", "ephemeral", "csi",
        }, vol  # fmt: skip
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert not sc["capabilities"].get("add")
        assert sc["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
        assert not sc.get("privileged")
        assert sc.get("runAsUser", psc.get("runAsUser", 1)) != 0
        assert not c.get("ports") or all("hostPort" not in p for p in c["ports"])


def test_deployment_is_restricted() -> None:
    pod = _all_objects()["Deployment"]["spec"]["template"]["spec"]
    _assert_restricted(pod)
    # OpenShift: the restricted-v2 SCC picks the UID from the project's range.
    assert "runAsUser" not in pod["securityContext"]
    assert "runAsUser" not in pod["containers"][0]["securityContext"]


def test_deployment_overrides() -> None:
    dep = process_template(
        APP,
        {
            "DEPLOYMENT_NAME": "puller",
            "IMAGE": "quay.io/me/puller",
            "IMAGE_TAG": "v2",
            "SERVICEACCOUNT_NAME": "sa",
            "CONFIGMAP_NAME": "cm",
            "DEPLOYMENT_MEMORY_LIMIT": "128Mi",
        },
    )[0]
    pod = dep["spec"]["template"]["spec"]
    assert dep["metadata"]["name"] == "puller"
    assert pod["serviceAccountName"] == "sa"
    c = pod["containers"][0]
    assert c["image"] == "quay.io/me/puller:v2"
    assert c["envFrom"][0]["configMapRef"]["name"] == "cm"
    assert c["resources"]["limits"]["memory"] == "128Mi"
    assert {"name": "DEPLOYMENT_NAME", "value": "puller"} in c["env"]
    assert {"name": "CONFIGMAP_NAME", "value": "cm"} in c["env"]
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector == {**DEPLOYMENT_SELECTOR, "app.kubernetes.io/instance": "puller"}
    assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()


def _daemonset_pod_labels() -> dict[str, str]:
    """Labels of the DaemonSet's pods with the default names (DAEMONSET_NAME == DEPLOYMENT_NAME)."""
    defaults = parameter_defaults(CONFIGMAP)
    assert defaults["DAEMONSET_NAME"] == defaults["DEPLOYMENT_NAME"]
    config = load_config({**defaults, "IMAGES": "a=quay.io/a:1"})
    return build_daemonset(config)["spec"]["template"]["metadata"]["labels"]


def test_deployment_selector_does_not_match_the_daemonset_pods() -> None:
    # Else `oc logs deployment/kubernetes-image-puller` may pick one of the DaemonSet's pods.
    selector = _all_objects()["Deployment"]["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= _daemonset_pod_labels().items()


def test_role_rules_are_exactly_least_privilege() -> None:
    objs = _all_objects()
    assert objs["Role"]["rules"] == expected_rules()
    assert "ClusterRole" not in objs and "ClusterRoleBinding" not in objs


def test_role_reaches_only_the_configmap_it_is_told() -> None:
    by = _by_kind(process_template(SERVICEACCOUNT, {"CONFIGMAP_NAME": "cm"}))
    assert by["Role"]["rules"] == expected_rules("cm")


@pytest.mark.parametrize("path", [KUBERNETES / "role.yaml", SERVICEACCOUNT], ids=lambda p: p.name)
def test_every_role_rule_says_why(path: Path) -> None:
    # Each rule (`- apiGroups:`) is preceded by a comment line.
    lines = path.read_text().splitlines()
    rules = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert len(rules) == len(expected_rules())
    for i in rules:
        assert lines[i - 1].strip().startswith("#"), lines[i]


def test_rolebinding_binds_the_role_to_the_serviceaccount() -> None:
    objs = process_template(SERVICEACCOUNT, {"SERVICEACCOUNT_NAME": "sa"})
    by = _by_kind(objs)
    assert by["ServiceAccount"]["metadata"]["name"] == "sa"
    rb = by["RoleBinding"]
    assert rb["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": by["Role"]["metadata"]["name"],
    }
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "sa"}]


# --- The oc process emulation itself --------------------------------------------------------


def test_unknown_parameter_is_an_error() -> None:
    with pytest.raises(TemplateError, match="unknown parameter"):
        process_template(APP, {"NO_SUCH_PARAMETER": "x"})


def test_required_parameter_must_not_be_empty() -> None:
    with pytest.raises(TemplateError, match="required"):
        process_template(APP, {"IMAGE": ""})


def test_substitution_forms(tmp_path: Path) -> None:
    tpl = {
        "apiVersion": "template.openshift.io/v1",
        "kind": "Template",
        "metadata": {"name": "t"},
        "labels": {"tpl": "${A}"},
        "objects": [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "${A}-${A}"},
                "data": {"n": "${{N}}", "s": "n=${{N}}", "u": "${UNDECLARED}"},
            }
        ],
        "parameters": [{"name": "A", "value": "a"}, {"name": "N", "value": "3"}],
    }
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(tpl))
    (obj,) = process_template(path, {"A": "b"})
    assert obj["metadata"]["name"] == "b-b"
    assert obj["metadata"]["labels"] == {"tpl": "b"}
    assert obj["data"] == {"n": 3, "s": "n=3", "u": "${UNDECLARED}"}


# --- Plain Kubernetes (kustomize) ---------------------------------------------------------


@pytest.fixture(scope="module")
def kustomized() -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_kustomize_has_the_same_kinds_plus_namespace(kustomized: list[dict]) -> None:
    by = _by_kind(kustomized)
    assert set(by) == set(_all_objects()) | {"Namespace"}
    ns = by["Namespace"]
    assert ns["metadata"]["name"] == "k8s-image-puller"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for kind, obj in by.items():
        if kind != "Namespace":
            assert obj["metadata"]["namespace"] == "k8s-image-puller", kind


def test_kustomize_matches_the_templates(kustomized: list[dict]) -> None:
    """Same objects as `oc process` with the defaults; only the differences listed here."""
    kube = _by_kind(kustomized)
    for kind, tpl_obj in _all_objects().items():
        obj = copy.deepcopy(kube[kind])
        del obj["metadata"]["namespace"]
        expected = copy.deepcopy(tpl_obj)
        if kind == "RoleBinding":
            expected["subjects"][0]["namespace"] = "k8s-image-puller"
        if kind == "Deployment":
            psc = obj["spec"]["template"]["spec"]["securityContext"]
            # Plain Kubernetes has no SCC: a fixed, numeric non-root UID/GID.
            assert psc.pop("runAsUser") == 65532
            assert psc.pop("runAsGroup") == 65532
        assert obj == expected, kind


def test_kustomize_deployment_selector_does_not_match_the_daemonset_pods(
    kustomized: list[dict],
) -> None:
    deployment = _by_kind(kustomized)["Deployment"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == DEPLOYMENT_SELECTOR
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert not selector.items() <= _daemonset_pod_labels().items()


def test_kustomize_deployment_is_restricted(kustomized: list[dict]) -> None:
    _assert_restricted(_by_kind(kustomized)["Deployment"]["spec"]["template"]["spec"])


def test_kustomize_configmap_namespace_matches(kustomized: list[dict]) -> None:
    by = _by_kind(kustomized)
    assert by["ConfigMap"]["data"]["NAMESPACE"] == by["Namespace"]["metadata"]["name"]


# --- The image (no engine here: the Containerfile is checked as text) -----------------------


def _containerfile_final_stage() -> list[str]:
    lines = (ROOT / "Containerfile").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    assert len(starts) >= 2, "multi-stage: build the sleep, then the image"
    return [line.strip() for line in lines[starts[-1] :] if line.strip()]


def test_containerfile_final_stage() -> None:
    final = _containerfile_final_stage()
    # Debian's python3 on bookworm, as hack/build-image-rootfs.sh builds it without an engine
    # (issue 18: the same image either way); /bin is a link to /usr/bin there.
    assert final[0].startswith("FROM docker.io/library/debian:bookworm-slim")
    assert any(
        line.startswith("COPY --from=sleep ") and line.endswith(" /usr/bin/sleep") for line in final
    )
    users = [line for line in final if line.startswith("USER ")]
    assert users == ["USER 65532:65532"], "numeric non-root user, so runAsNonRoot can be verified"
    assert 'ENTRYPOINT ["imagepuller"]' in final
    assert 'CMD ["run"]' in final


def test_build_image_says_plainly_when_no_engine(tmp_path: Path) -> None:
    # An empty PATH apart from the basics: neither podman nor docker can answer.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "timeout"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    proc = subprocess.run(
        [str(bin_dir / "bash"), str(ROOT / "hack" / "build-image.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(bin_dir)},
    )
    assert proc.returncode == 1
    assert "no container engine is available" in proc.stderr


def _pod_templates() -> list[tuple[str, dict]]:
    """Every pod template in the install: the processed templates and the kustomize files."""
    objects = [(f"openshift/{o['kind']}", o) for o in _all_objects().values()]
    for path in sorted(KUBERNETES.glob("*.yaml")):
        objects += [
            (f"kubernetes/{path.name}", o) for o in yaml.safe_load_all(path.read_text()) if o
        ]
    return [
        (where, o["spec"]["template"]["spec"])
        for where, o in objects
        if "template" in (o.get("spec") or {})
    ]


def test_no_manifest_overrides_the_images_entrypoint() -> None:
    # The documented default IMAGE (registry.redhat.io/devspaces/imagepuller-rhel8) has no
    # `imagepuller` executable: a command would make the templates' defaults start a container
    # that cannot run. Our image's ENTRYPOINT/CMD (imagepuller run) does the same job.
    templates = _pod_templates()
    assert {where for where, _ in templates} == {
        "openshift/Deployment",
        "kubernetes/deployment.yaml",
    }
    for where, pod in templates:
        for container in pod.get("initContainers", []) + pod["containers"]:
            assert "command" not in container, (where, container["name"])
            assert "args" not in container, (where, container["name"])
