"""The operator's install (manifests/operator/) and its OLM bundle (bundle/), checked without a
cluster: the objects, least-privilege RBAC, and a bundle that says the same as the install.

`kubectl kustomize` (the control plane's kubectl when built, else the machine's) renders the
kustomization when one is there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from imagepuller.config import load_config
from imagepuller.daemonset import build_daemonset
from imagepuller.resource import GROUP, KIND, PLURAL, VERSION, config_from_resource
from tests.unit.test_manifests import _assert_restricted

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = ROOT / "manifests" / "operator"
BUNDLE = ROOT / "bundle"
CSV = BUNDLE / "manifests" / "imagepuller-operator.clusterserviceversion.yaml"
BUNDLE_CRD = BUNDLE / "manifests" / "kubernetesimagepullers.che.eclipse.org.crd.yaml"
ANNOTATIONS = BUNDLE / "metadata" / "annotations.yaml"

NAME = "imagepuller-operator"  # the Namespace, ServiceAccount, ClusterRole, Deployment, Lease
NAMESPACE = "imagepuller-operator"
IMAGE = "registry.redhat.io/devspaces/imagepuller-rhel8:latest"

# kustomization.yaml's resources, in order, and the one object of each file.
FILES = {
    "namespace.yaml": "Namespace",
    "crd.yaml": "CustomResourceDefinition",
    "serviceaccount.yaml": "ServiceAccount",
    "clusterrole.yaml": "ClusterRole",
    "clusterrolebinding.yaml": "ClusterRoleBinding",
    "role.yaml": "Role",
    "rolebinding.yaml": "RoleBinding",
    "deployment.yaml": "Deployment",
    "admission-params.yaml": "ConfigMap",
    "admission-policy.yaml": "ValidatingAdmissionPolicy",
    "admission-binding.yaml": "ValidatingAdmissionPolicyBinding",
}
CLUSTER_SCOPED = {
    "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
}  # fmt: skip

# Everything the operator may do, in every namespace. Nothing else: no Deployments, ConfigMaps,
# ServiceAccounts or RBAC objects (the community operator needs those per resource), no write to
# a resource's spec.
CLUSTER_RULES = [
    {"apiGroups": ["che.eclipse.org"], "resources": ["kubernetesimagepullers"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["che.eclipse.org"], "resources": ["kubernetesimagepullers/status"],
     "verbs": ["patch"]},
    {"apiGroups": ["apps"], "resources": ["daemonsets"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]  # fmt: skip
# Leader election, in its own namespace only.
LEASE_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
     "verbs": ["get", "create", "update"]},
]  # fmt: skip

SUBJECT = {"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}
ENV = {"POD_NAMESPACE", "POD_NAME", "WATCH_NAMESPACES", "METRICS_PORT"}

EXAMPLE_IMAGES = "java=quay.io/eclipse/che-java17-maven:next;node=docker.io/library/node:20-alpine;"

# OperatorHub's accepted values (operator-framework/api, validation/internal/operatorhub.go).
CAPABILITIES = {"Basic Install", "Seamless Upgrades", "Full Lifecycle", "Deep Insights",
                "Auto Pilot"}  # fmt: skip
CATEGORIES = {
    "AI/Machine Learning", "Application Runtime", "Big Data", "Cloud Provider", "Developer Tools",
    "Database", "Integration & Delivery", "Logging & Tracing", "Monitoring", "Networking",
    "OpenShift Optional", "Security", "Storage", "Streaming & Messaging",
}  # fmt: skip


def _load(path: Path) -> dict:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert len(documents) == 1, f"{path.name}: one object per file"
    return documents[0]


def _obj(kind: str) -> dict:
    (name,) = [f for f, k in FILES.items() if k == kind]
    return _load(OPERATOR / name)


def _normalized(rules: list[dict]) -> list[tuple]:
    """Rules as comparable values: the order of rules and of the lists inside one rule ignored."""
    return sorted(
        tuple(sorted((key, tuple(sorted(values))) for key, values in rule.items()))
        for rule in rules
    )


def _csv() -> dict:
    return _load(CSV)


def _install_spec() -> dict:
    csv = _csv()
    assert csv["spec"]["install"]["strategy"] == "deployment"
    return csv["spec"]["install"]["spec"]


def _crd_version() -> tuple[dict, dict]:
    crd = _load(OPERATOR / "crd.yaml")
    (version,) = crd["spec"]["versions"]
    return crd, version


# --- The kustomization ------------------------------------------------------------------------


def test_kustomization_lists_exactly_the_files() -> None:
    kustomization = _load(OPERATOR / "kustomization.yaml")
    assert kustomization["resources"] == list(FILES)
    assert kustomization["namespace"] == NAMESPACE
    # Nothing else that could rename or relabel what the tests below check.
    assert set(kustomization) == {"apiVersion", "kind", "namespace", "resources", "transformers"}
    # The one transformer takes the namespace off the cluster-scoped admission objects only.
    (transformer,) = [yaml.safe_load(t) for t in kustomization["transformers"]]
    assert transformer["kind"] == "PatchTransformer"
    assert transformer["target"] == {"group": "admissionregistration.k8s.io"}
    assert json.loads(transformer["patch"]) == [
        {"op": "add", "path": "/metadata/namespace", "value": ""},
        {"op": "remove", "path": "/metadata/namespace"},
    ]
    # Every other file of the directory is one of those, or the example (not applied).
    on_disk = {p.name for p in OPERATOR.iterdir()}
    assert on_disk == set(FILES) | {"kustomization.yaml", "example.yaml"}


@pytest.mark.parametrize(("name", "kind"), FILES.items())
def test_one_object_per_file_of_its_kind(name: str, kind: str) -> None:
    obj = _load(OPERATOR / name)
    assert obj["kind"] == kind
    # kustomize sets the namespace; the files name none (the bindings' subjects do, below).
    assert "namespace" not in obj["metadata"]
    assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == NAME


def test_namespace_enforces_restricted() -> None:
    ns = _obj("Namespace")
    assert ns["metadata"]["name"] == NAMESPACE
    labels = ns["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


# --- RBAC -----------------------------------------------------------------------------------


def test_clusterrole_rules_are_exactly_least_privilege() -> None:
    role = _obj("ClusterRole")
    assert role["metadata"]["name"] == NAME
    assert _normalized(role["rules"]) == _normalized(CLUSTER_RULES)
    assert len(role["rules"]) == len(CLUSTER_RULES)
    assert "aggregationRule" not in role


def test_clusterrole_has_nothing_the_community_operator_needs() -> None:
    # KIPO creates a Deployment, ConfigMap, ServiceAccount, Role and RoleBinding per resource.
    rules = _obj("ClusterRole")["rules"]
    granted = {(g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    assert not {g for g, _ in granted} & {"rbac.authorization.k8s.io", "*"}
    assert not {r for _, r in granted} & {
        "deployments", "configmaps", "serviceaccounts", "secrets", "roles", "rolebindings", "*",
    }  # fmt: skip
    # The spec is never written: only the status subresource, and only patched.
    verbs = {
        v for rule in rules if "kubernetesimagepullers" in rule["resources"] for v in rule["verbs"]
    }
    assert verbs == {"get", "list", "watch"}


def test_leader_election_role() -> None:
    role = _obj("Role")
    assert role["metadata"]["name"] == "imagepuller-operator-leader-election"
    assert _normalized(role["rules"]) == _normalized(LEASE_RULES)


@pytest.mark.parametrize(
    ("name", "count"), [("clusterrole.yaml", len(CLUSTER_RULES)), ("role.yaml", len(LEASE_RULES))]
)
def test_every_rule_says_why(name: str, count: int) -> None:
    # Each rule (`- apiGroups:`) is preceded by a comment line.
    lines = (OPERATOR / name).read_text().splitlines()
    rules = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert len(rules) == count
    for i in rules:
        assert lines[i - 1].strip().startswith("#"), lines[i]


def test_clusterrole_says_what_it_does_not_need() -> None:
    text = (OPERATOR / "clusterrole.yaml").read_text()
    assert "KIPO" in text and "Role" in text


@pytest.mark.parametrize(
    ("binding", "role_kind", "role_name"),
    [
        ("ClusterRoleBinding", "ClusterRole", NAME),
        ("RoleBinding", "Role", "imagepuller-operator-leader-election"),
    ],
)
def test_bindings_point_to_the_serviceaccount(binding: str, role_kind: str, role_name: str) -> None:
    obj = _obj(binding)
    assert obj["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": role_kind,
        "name": role_name,
    }
    assert _obj(role_kind)["metadata"]["name"] == role_name
    # Explicit namespace: a ClusterRoleBinding has none to lend, and kustomize leaves it alone.
    assert obj["subjects"] == [SUBJECT]
    assert _obj("ServiceAccount")["metadata"]["name"] == SUBJECT["name"]


# --- The Deployment ---------------------------------------------------------------------------


def _pod() -> dict:
    return _obj("Deployment")["spec"]["template"]["spec"]


def _container() -> dict:
    (container,) = _pod()["containers"]
    return container


def test_deployment() -> None:
    dep = _obj("Deployment")
    spec = dep["spec"]
    assert dep["metadata"]["name"] == NAME
    # 2 is safe (leader election), 1 by default; two pods at once are safe during a rollout.
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "RollingUpdate"
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert _pod()["serviceAccountName"] == SUBJECT["name"]
    assert _pod().get("automountServiceAccountToken", True), "the operator needs its token"
    container = _container()
    assert container["image"] == IMAGE
    # The image's ENTRYPOINT is `imagepuller`; the args pick the mode.
    assert "command" not in container
    assert container["args"] == ["operator"]
    assert "envFrom" not in container


def test_deployment_env() -> None:
    env = {e["name"]: e for e in _container()["env"]}
    assert set(env) == ENV
    assert len(_container()["env"]) == len(ENV)
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["WATCH_NAMESPACES"] == {"name": "WATCH_NAMESPACES", "value": ""}  # every namespace
    assert env["METRICS_PORT"] == {"name": "METRICS_PORT", "value": "8080"}


def test_deployment_port_and_probes() -> None:
    container = _container()
    (port,) = container["ports"]
    assert port == {"name": "metrics", "containerPort": 8080, "protocol": "TCP"}
    assert "hostPort" not in port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # The same probes as the single puller's Deployment.
    single = _load(ROOT / "manifests" / "kubernetes" / "deployment.yaml")
    (single_container,) = single["spec"]["template"]["spec"]["containers"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe] == single_container[probe], probe


def test_deployment_is_restricted() -> None:
    pod = _pod()
    _assert_restricted(pod)
    assert all("hostPort" not in p for c in pod["containers"] for p in c.get("ports", []))
    # No fixed UID: the image's numeric USER serves runAsNonRoot on Kubernetes, and OpenShift's
    # restricted-v2 SCC (the OLM path) refuses a UID outside the namespace's range.
    assert "runAsUser" not in pod["securityContext"]
    assert "runAsUser" not in _container()["securityContext"]


def test_deployment_selector_does_not_match_a_daemonsets_pods() -> None:
    # A resource may live in the operator's namespace; its DaemonSet's pods must not count as
    # the operator's.
    selector = _obj("Deployment")["spec"]["selector"]["matchLabels"]
    for name in ("kubernetes-image-puller", NAME):
        config = load_config({"IMAGES": "a=quay.io/a:1", "DAEMONSET_NAME": name})
        pod_labels = build_daemonset(config)["spec"]["template"]["metadata"]["labels"]
        assert not selector.items() <= pod_labels.items(), name


# --- Admission: creating a resource needs the rights of a DaemonSet creator (docs/operator.md) --

POLICY = "imagepuller-operator-kubernetesimagepullers"
PARAMS = "imagepuller-admission"
# The Che / Dev Spaces operators' accounts (ServiceAccount che-operator, renamed devspaces-operator
# downstream; OLM installs them in openshift-operators, chectl in eclipse-che). Their ClusterRole
# allows kubernetesimagepullers but no DaemonSets, so only the parameters admit them.
CHE_OPERATORS = [
    "system:serviceaccount:openshift-operators:devspaces-operator",
    "system:serviceaccount:openshift-operators:che-operator",
    "system:serviceaccount:eclipse-che:che-operator",
]
# docs/operator.md's command for an OLM install, where the operator's namespace differs.
OLM_NAMESPACE = "openshift-operators"
OLM_SED = f"s/namespace: {NAMESPACE}/namespace: {OLM_NAMESPACE}/"


def _policy_spec() -> dict:
    return _obj("ValidatingAdmissionPolicy")["spec"]


def test_policy_matches_creates_and_updates_of_the_resource_only() -> None:
    policy = _obj("ValidatingAdmissionPolicy")
    assert policy["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert policy["metadata"]["name"] == POLICY
    spec = _policy_spec()
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert rule["apiGroups"] == [GROUP]
    assert VERSION in rule["apiVersions"] or rule["apiVersions"] == ["*"]
    # Not DELETE (runs nothing), not kubernetesimagepullers/status (the operator's own writes):
    # a rule matches a subresource only when it names it.
    assert sorted(rule["operations"]) == ["CREATE", "UPDATE"]
    assert rule["resources"] == [PLURAL]
    assert "namespaceSelector" not in spec["matchConstraints"]
    assert "objectSelector" not in spec["matchConstraints"]
    # Fails closed: an expression that cannot be evaluated refuses.
    assert spec["failurePolicy"] == "Fail"
    assert spec["paramKind"] == {"apiVersion": "v1", "kind": "ConfigMap"}


def test_policy_judges_every_create_and_every_spec_change() -> None:
    (condition,) = _policy_spec()["matchConditions"]
    expression = " ".join(condition["expression"].split())
    assert expression.startswith("request.operation == 'CREATE' || ")
    assert "object.spec != oldObject.spec" in expression
    assert "has(object.spec) != has(oldObject.spec)" in expression  # removing the spec too


def test_policy_admits_daemonset_creators_and_the_listed_users() -> None:
    spec = _policy_spec()
    (validation,) = spec["validations"]
    expression = " ".join(validation["expression"].split()).replace("( ", "(").replace(" .", ".")
    assert (
        "authorizer.group('apps').resource('daemonsets').namespace(request.namespace)"
        ".check('create').allowed()"
    ) in expression
    assert "|| request.userInfo.username in variables.allowedUsers" in expression
    (variable,) = spec["variables"]
    assert variable["name"] == "allowedUsers"
    assert "params.?data.?allowedUsers.orValue('')" in variable["expression"]
    assert validation["reason"] == "Forbidden"
    message = validation["messageExpression"]
    words = ["runs its images on every node", "create DaemonSets in namespace",
             "request.namespace", "params.metadata.namespace", "key allowedUsers"]  # fmt: skip
    for part in words:
        assert part in message, part


def test_binding_denies_everywhere_with_the_params_of_the_operators_namespace() -> None:
    binding = _obj("ValidatingAdmissionPolicyBinding")
    assert binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    spec = binding["spec"]
    assert spec["policyName"] == POLICY == binding["metadata"]["name"]
    assert spec["validationActions"] == ["Deny"]
    assert "matchResources" not in spec, "every namespace"
    # Named explicitly (kustomize's `namespace:` does not rewrite paramRef), and failing closed
    # when the ConfigMap is missing: `Allow` would switch the check off for everyone.
    assert spec["paramRef"] == {
        "name": PARAMS,
        "namespace": NAMESPACE,
        "parameterNotFoundAction": "Deny",
    }
    assert _obj("ConfigMap")["metadata"]["name"] == PARAMS


def test_params_list_the_che_operators_accounts() -> None:
    params = _obj("ConfigMap")
    assert set(params["data"]) == {"allowedUsers"}
    users = [line.strip() for line in params["data"]["allowedUsers"].splitlines() if line.strip()]
    assert users == CHE_OPERATORS
    for user in users:
        prefix, kind, namespace, name = user.split(":")
        assert (prefix, kind) == ("system", "serviceaccount") and namespace and name, user


def test_olm_command_moves_only_the_params_namespace() -> None:
    # OLM bundles cannot carry a ValidatingAdmissionPolicy (test_bundle_layout): docs/operator.md
    # applies the three files after an OLM install, the binding through this sed expression.
    docs = (ROOT / "docs" / "operator.md").read_text()
    assert OLM_SED in docs
    for name in ("admission-policy.yaml", "admission-params.yaml", "admission-binding.yaml"):
        assert f"manifests/operator/{name}" in docs, name
    text = (OPERATOR / "admission-binding.yaml").read_text()
    assert text.count(f"namespace: {NAMESPACE}") == 1
    moved = yaml.safe_load(text.replace(f"namespace: {NAMESPACE}", f"namespace: {OLM_NAMESPACE}"))
    expected = _obj("ValidatingAdmissionPolicyBinding")
    expected["spec"]["paramRef"]["namespace"] = OLM_NAMESPACE
    assert moved == expected


# --- The example resource (section 3.6.5) ---------------------------------------------------


def test_example_is_the_documented_resource() -> None:
    example = _load(OPERATOR / "example.yaml")
    assert example["apiVersion"] == f"{GROUP}/{VERSION}"
    assert example["kind"] == KIND
    assert example["metadata"] == {
        "name": "k8s-image-puller-images",
        "namespace": "k8s-image-puller",
    }
    assert example["spec"] == {"images": EXAMPLE_IMAGES}
    config = config_from_resource(example)
    assert config.namespace == "k8s-image-puller"


# --- The OLM bundle -------------------------------------------------------------------------


def test_bundle_layout() -> None:
    # OLM reads every file of manifests/ as an object: no directory, no hidden file.
    assert {p.name for p in (BUNDLE / "manifests").iterdir()} == {CSV.name, BUNDLE_CRD.name}
    assert {p.name for p in (BUNDLE / "metadata").iterdir()} == {ANNOTATIONS.name}


def test_bundle_crd_is_the_installs_crd() -> None:
    assert BUNDLE_CRD.read_bytes() == (OPERATOR / "crd.yaml").read_bytes()


def test_bundle_annotations() -> None:
    assert _load(ANNOTATIONS) == {
        "annotations": {
            "operators.operatorframework.io.bundle.mediatype.v1": "registry+v1",
            "operators.operatorframework.io.bundle.manifests.v1": "manifests/",
            "operators.operatorframework.io.bundle.metadata.v1": "metadata/",
            "operators.operatorframework.io.bundle.package.v1": NAME,
            "operators.operatorframework.io.bundle.channels.v1": "alpha",
            "operators.operatorframework.io.bundle.channel.default.v1": "alpha",
        }
    }


def test_csv_identity() -> None:
    csv = _csv()
    assert csv["apiVersion"] == "operators.coreos.com/v1alpha1"
    assert csv["kind"] == "ClusterServiceVersion"
    assert csv["metadata"]["name"] == f"{NAME}.v0.1.0"
    spec = csv["spec"]
    assert spec["version"] == "0.1.0"
    assert csv["metadata"]["name"].endswith(f".v{spec['version']}")
    assert spec["maturity"] == "alpha"
    assert spec["displayName"] and spec["description"].strip()
    assert spec["provider"]["name"]
    assert isinstance(spec["minKubeVersion"], str)
    assert tuple(map(int, spec["minKubeVersion"].split("."))) >= (1, 25, 0)
    annotations = csv["metadata"]["annotations"]
    assert annotations["capabilities"] in CAPABILITIES
    assert {c.strip() for c in annotations["categories"].split(",")} <= CATEGORIES
    assert annotations["containerImage"] == IMAGE == _container()["image"]


def test_csv_install_modes_all_namespaces_only() -> None:
    modes = {m["type"]: m["supported"] for m in _csv()["spec"]["installModes"]}
    assert len(_csv()["spec"]["installModes"]) == 4
    assert modes == {
        "OwnNamespace": False,
        "SingleNamespace": False,
        "MultiNamespace": False,
        "AllNamespaces": True,
    }


def test_csv_owns_the_crd() -> None:
    crd, version = _crd_version()
    (owned,) = _csv()["spec"]["customresourcedefinitions"]["owned"]
    assert owned["name"] == crd["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert owned["name"] == f"{crd['spec']['names']['plural']}.{crd['spec']['group']}"
    assert owned["version"] == version["name"] == VERSION
    assert owned["kind"] == crd["spec"]["names"]["kind"] == KIND
    assert owned["displayName"] and owned["description"]
    spec_fields = set(version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])
    for descriptor in owned.get("specDescriptors", []):
        assert descriptor["path"] in spec_fields, descriptor
    status_fields = set(version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"])
    for descriptor in owned.get("statusDescriptors", []):
        assert descriptor["path"].split(".")[0] in status_fields, descriptor
    assert "required" not in _csv()["spec"]["customresourcedefinitions"]


def test_csv_cluster_permissions_are_the_clusterroles_rules() -> None:
    (permission,) = _install_spec()["clusterPermissions"]
    assert permission["serviceAccountName"] == SUBJECT["name"]
    assert permission["rules"] == _obj("ClusterRole")["rules"]
    assert _normalized(permission["rules"]) == _normalized(CLUSTER_RULES)


def test_csv_permissions_are_the_roles_rules() -> None:
    (permission,) = _install_spec()["permissions"]
    assert permission["serviceAccountName"] == SUBJECT["name"]
    assert permission["rules"] == _obj("Role")["rules"]
    assert _normalized(permission["rules"]) == _normalized(LEASE_RULES)


def test_csv_deployment_is_the_installs_deployment() -> None:
    (deployment,) = _install_spec()["deployments"]
    installed = _obj("Deployment")
    assert deployment["name"] == installed["metadata"]["name"]
    assert deployment["spec"] == installed["spec"]
    assert deployment.get("label", {}).items() <= installed["metadata"]["labels"].items()


def test_csv_alm_examples() -> None:
    examples = json.loads(_csv()["metadata"]["annotations"]["alm-examples"])
    assert isinstance(examples, list) and examples
    _, version = _crd_version()
    spec_fields = set(version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])
    for example in examples:
        assert example["apiVersion"] == f"{GROUP}/{VERSION}"
        assert example["kind"] == KIND
        assert "namespace" not in example["metadata"], "created where the user chooses"
        assert set(example["spec"]) <= spec_fields
        assert all(isinstance(value, str) for value in example["spec"].values())
        namespaced = {**example, "metadata": {**example["metadata"], "namespace": "team-a"}}
        assert config_from_resource(namespaced).namespace == "team-a"
    # The section 3.6.5 resource, without its namespace.
    example = _load(OPERATOR / "example.yaml")
    del example["metadata"]["namespace"]
    assert examples == [example]


# --- Rendered by kustomize ------------------------------------------------------------------


def _kubectl() -> str | None:
    """The control plane's kubectl when it is built (never built here), else the machine's."""
    try:
        from localcluster.binaries import MissingBinariesError, find_kubectl
    except ImportError:  # pragma: no cover - the repository's own package
        return shutil.which("kubectl")
    try:
        return str(find_kubectl(build=False))
    except MissingBinariesError:
        return shutil.which("kubectl")


@pytest.fixture(scope="module")
def kustomized() -> list[dict]:
    kubectl = _kubectl()
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(OPERATOR)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_kustomize_renders_every_file_once(kustomized: list[dict]) -> None:
    assert sorted(o["kind"] for o in kustomized) == sorted(FILES.values())


def test_kustomize_namespaces(kustomized: list[dict]) -> None:
    for obj in kustomized:
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"], obj["kind"]
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]
    by = {o["kind"]: o for o in kustomized}
    assert by["Namespace"]["metadata"]["name"] == NAMESPACE
    # The bindings' subject is where the ServiceAccount and the Deployment actually are.
    for binding in ("ClusterRoleBinding", "RoleBinding"):
        assert by[binding]["subjects"] == [SUBJECT], binding
    assert by["ServiceAccount"]["metadata"]["namespace"] == SUBJECT["namespace"]
    assert by["Deployment"]["metadata"]["namespace"] == SUBJECT["namespace"]


def test_kustomize_changes_nothing_but_the_namespace(kustomized: list[dict]) -> None:
    for obj in kustomized:
        expected = _obj(obj["kind"])
        if obj["kind"] not in CLUSTER_SCOPED:
            expected["metadata"]["namespace"] = NAMESPACE
        assert obj == expected, obj["kind"]
