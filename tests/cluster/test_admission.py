"""The ValidatingAdmissionPolicy of manifests/operator on the real API server: creating or changing
a KubernetesImagePuller needs the right to create DaemonSets in its namespace, or a name in the
policy's parameters; requests are made by impersonation, with exactly the rights under test.

The policy is applied with the expressions of admission-policy.yaml unchanged, under names of this
module (policies are cluster-scoped and the cluster is shared by the session), and its bindings
select only the namespaces this module labels, so no other test's requests are judged by it.
Everything cluster-scoped is deleted afterwards.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from imagepuller.resource import GROUP, PLURAL, VERSION
from tests.apiobjects import read_or_none
from tests.waiting import wait_until

OPERATOR = Path(__file__).resolve().parents[2] / "manifests" / "operator"
ADMISSION = "admissionregistration.k8s.io"
RBAC = "rbac.authorization.k8s.io"
IMAGES = "java=quay.io/eclipse/che-java17-maven:next;node=docker.io/library/node:20-alpine;"
# What every refusal by the policy says (its messageExpression).
REFUSAL = "runs its images on every node it selects"
# The Dev Spaces operator as OLM installs it (AllNamespaces, in openshift-operators), and the one
# rule its ClusterRole has for these resources (devspaces.csv.yaml, clusterPermissions; it has
# none for DaemonSets).
DEVSPACES_OPERATOR = "system:serviceaccount:openshift-operators:devspaces-operator"
DEVSPACES_RULES = [
    {"apiGroups": [GROUP], "resources": [PLURAL],
     "verbs": ["create", "delete", "get", "update", "list"]},
]  # fmt: skip
EDIT_RESOURCES = [
    {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["create", "update", "get", "list"]},
]
CREATE_DAEMONSETS = {"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["create"]}


def _load(name: str) -> dict:
    return yaml.safe_load((OPERATOR / name).read_text())


def _puller(name: str, images: str = IMAGES, labels: dict | None = None) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "KubernetesImagePuller",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"images": images},
    }


class Admission:
    """The policy of admission-policy.yaml, bound (as admission-binding.yaml binds it) to the
    namespaces labelled ``label`` with the parameters of admission-params.yaml."""

    def __init__(self, api_client, suffix: str, params_namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.rbac = client.RbacAuthorizationV1Api(api_client)
        self.suffix = suffix
        self.label = f"imagepuller-admission-test-{suffix}"
        self.params_namespace = params_namespace
        self.policy = f"imagepuller-admission-test-{suffix}"
        self.bindings: list[str] = []
        self.cluster_roles: list[str] = []

    def apply_policy(self) -> dict:
        policy = _load("admission-policy.yaml")
        policy["metadata"]["name"] = self.policy
        return self.custom.create_cluster_custom_object(
            ADMISSION, "v1", "validatingadmissionpolicies", policy
        )

    def bind(self, name: str, label_value: str, params: str) -> str:
        binding = _load("admission-binding.yaml")
        binding["metadata"]["name"] = f"{name}-{self.suffix}"
        binding["spec"]["policyName"] = self.policy
        binding["spec"]["paramRef"]["namespace"] = self.params_namespace
        binding["spec"]["paramRef"]["name"] = params
        binding["spec"]["matchResources"] = {
            "namespaceSelector": {"matchLabels": {self.label: label_value}}
        }
        self.bindings.append(binding["metadata"]["name"])
        self.custom.create_cluster_custom_object(
            ADMISSION, "v1", "validatingadmissionpolicybindings", binding
        )
        return str(binding["metadata"]["name"])

    def read_policy(self) -> dict:
        return self.custom.get_cluster_custom_object(
            ADMISSION, "v1", "validatingadmissionpolicies", self.policy
        )

    def cluster_role_for(self, user: str, rules: list[dict]) -> None:
        """A ClusterRole with ``rules`` bound to ServiceAccount ``user`` (removed afterwards)."""
        _, _, namespace, name = user.split(":")
        role = f"imagepuller-admission-test-{self.suffix}-{len(self.cluster_roles)}"
        self.rbac.create_cluster_role({"metadata": {"name": role}, "rules": rules})
        self.rbac.create_cluster_role_binding(
            {
                "metadata": {"name": role},
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            }
        )
        self.cluster_roles.append(role)

    def delete_all(self) -> None:
        for name in self.bindings:
            _delete(lambda n=name: self.custom.delete_cluster_custom_object(
                ADMISSION, "v1", "validatingadmissionpolicybindings", n))  # fmt: skip
        _delete(lambda: self.custom.delete_cluster_custom_object(
            ADMISSION, "v1", "validatingadmissionpolicies", self.policy))  # fmt: skip
        for role in self.cluster_roles:
            _delete(lambda r=role: self.rbac.delete_cluster_role_binding(r))
            _delete(lambda r=role: self.rbac.delete_cluster_role(r))


def _delete(delete: Callable[[], object]) -> None:
    try:
        delete()
    except ApiException as err:
        if err.status != 404:
            raise


@pytest.fixture(scope="module")
def module_api(cluster) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="module")
def admission(cluster, crd, module_api) -> Iterator[Admission]:
    """The policy, its binding and its parameters (admission-params.yaml) in a namespace of this
    module, in force; removed after the module."""
    core = client.CoreV1Api(module_api)
    suffix = uuid.uuid4().hex[:8]
    params_namespace = f"t-admission-{suffix}"
    core.create_namespace({"metadata": {"name": params_namespace}})
    params = _load("admission-params.yaml")
    core.create_namespaced_config_map(params_namespace, params)
    state = Admission(module_api, suffix, params_namespace)
    try:
        state.apply_policy()
        state.bind("imagepuller-admission-test", "on", params["metadata"]["name"])
        yield state
    finally:
        state.delete_all()
        core.delete_namespace(params_namespace)


def as_user(cluster, user: str) -> client.ApiClient:
    """A client for the admin kubeconfig that acts as ``user`` (impersonation: the API server
    authorizes, and the policy judges, that user; a ServiceAccount's groups are added)."""
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    api.set_default_header("Impersonate-User", user)
    return api


@pytest.fixture
def users(cluster) -> Iterator[Callable[[str], client.CustomObjectsApi]]:
    """``users(name)``: a CustomObjectsApi acting as ``name``; closed after the test."""
    made: list[client.ApiClient] = []

    def make(user: str) -> client.CustomObjectsApi:
        api = as_user(cluster, user)
        made.append(api)
        return client.CustomObjectsApi(api)

    yield make
    for api in made:
        api.close()


@pytest.fixture
def judged(api_client, admission, namespace, users) -> str:
    """The test's namespace, judged by the policy, once the policy refuses there: a dry-run create
    by a user with only the right to create resources, retried until the policy (with its
    parameters loaded: the message names their namespace) refuses it."""
    core = client.CoreV1Api(api_client)
    core.patch_namespace(namespace, {"metadata": {"labels": {admission.label: "on"}}})
    grant(api_client, namespace, "admission-probe", "probe", EDIT_RESOURCES)
    probe = users(f"system:serviceaccount:{namespace}:admission-probe")

    def refused() -> bool:
        try:
            probe.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, _puller("probe"), dry_run="All"
            )
        except ApiException as err:
            body = str(err.body)
            return err.status == 403 and REFUSAL in body and admission.params_namespace in body
        return False

    wait_until(refused, 60, f"the admission policy to refuse in {namespace}", interval=0.5)
    return namespace


def grant(api_client, namespace: str, sa: str, role: str, rules: list[dict]) -> None:
    """Role ``role`` with ``rules`` in ``namespace``, bound to ServiceAccount ``sa`` there (the
    account itself need not exist: impersonation and RBAC go by its name)."""
    rbac = client.RbacAuthorizationV1Api(api_client)
    body = {"metadata": {"name": role}, "rules": rules}
    if read_or_none(rbac.read_namespaced_role, role, namespace) is None:
        rbac.create_namespaced_role(namespace, body)
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": role},
                "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
            },
        )
    else:
        rbac.replace_namespaced_role(role, namespace, body)


def can_i(api_client, user: str, verb: str, group: str, resource: str, namespace: str) -> bool:
    """What the authorizer answers for ``user`` (a SubjectAccessReview, as the policy asks it)."""
    _, _, sa_namespace, _ = user.split(":")
    review = client.AuthorizationV1Api(api_client).create_subject_access_review(
        {
            "spec": {
                "user": user,
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{sa_namespace}",
                           "system:authenticated"],
                "resourceAttributes": {
                    "verb": verb, "group": group, "resource": resource, "namespace": namespace,
                },
            }
        }
    )  # fmt: skip
    return bool(review.status.allowed)


def refusal(call: Callable[[], object]) -> str:
    """The API's message for a request the policy refuses (fails the test if it is admitted, or
    refused for another reason)."""
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status == 403, info.value.body
    assert REFUSAL in info.value.body, info.value.body
    return str(info.value.body)


def stored(api_client, namespace: str, name: str) -> dict | None:
    return read_or_none(
        client.CustomObjectsApi(api_client).get_namespaced_custom_object,
        GROUP, VERSION, namespace, PLURAL, name,
    )  # fmt: skip


# --- The policy as the API server reads it --------------------------------------------------


def test_policy_type_checks_without_warnings(admission) -> None:
    """The API server type-checks every expression against the CRD's schema and the ConfigMap's:
    a warning means an expression that would fail (and, failurePolicy Fail, refuse) at run time."""

    def checked() -> dict | None:
        policy = admission.read_policy()
        status = policy.get("status") or {}
        if status.get("observedGeneration") != policy["metadata"]["generation"]:
            return None
        return status if "typeChecking" in status else None

    status = wait_until(checked, 60, "the policy's type checking")
    assert not status["typeChecking"].get("expressionWarnings"), status["typeChecking"]


# --- Who is admitted ------------------------------------------------------------------------


def test_create_without_daemonset_rights_is_refused_and_then_admitted(
    api_client, judged, users
) -> None:
    namespace = judged
    user = f"system:serviceaccount:{namespace}:editor"
    grant(api_client, namespace, "editor", "edit-pullers", EDIT_RESOURCES)
    editor = users(user)
    assert not can_i(api_client, user, "create", "apps", "daemonsets", namespace)

    message = refusal(
        lambda: editor.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, _puller("cache")
        )
    )
    # The message names who, what right, where, and the other way in.
    assert f"user {user} needs the right to create DaemonSets in namespace {namespace}" in message
    assert "imagepuller-admission, key allowedUsers" in message
    assert stored(api_client, namespace, "cache") is None

    # With the right to create DaemonSets there, the same request is admitted.
    grant(api_client, namespace, "editor", "edit-pullers", [*EDIT_RESOURCES, CREATE_DAEMONSETS])
    wait_until(
        lambda: can_i(api_client, user, "create", "apps", "daemonsets", namespace),
        30,
        "the new rule to be in force",
    )
    editor.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _puller("cache"))
    resource = editor.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "cache")
    resource["spec"]["images"] = "java=quay.io/eclipse/che-java17-maven:next;"
    editor.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "cache", resource)
    assert stored(api_client, namespace, "cache")["spec"]["images"] == resource["spec"]["images"]


def test_spec_changes_are_refused_but_metadata_changes_pass(api_client, judged, users) -> None:
    """An update is judged when it changes the spec (what runs); a label, an owner reference or
    a finalizer (the garbage collector's own updates) is not, so it never blocks a deletion."""
    namespace = judged
    user = f"system:serviceaccount:{namespace}:editor"
    grant(api_client, namespace, "editor", "edit-pullers", EDIT_RESOURCES)
    editor = users(user)
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _puller("cache")
    )
    resource = editor.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "cache")

    changed = copy.deepcopy(resource)
    changed["spec"]["imagePullerImage"] = "quay.io/attacker/shell:latest"
    refusal(lambda: editor.replace_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "cache", changed))  # fmt: skip
    no_spec = copy.deepcopy(resource)
    del no_spec["spec"]
    refusal(lambda: editor.replace_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "cache", no_spec))  # fmt: skip

    labelled = copy.deepcopy(resource)
    labelled["metadata"]["labels"] = {"team": "a"}
    labelled["metadata"]["finalizers"] = ["example.com/hold"]
    editor.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "cache", labelled)
    after = stored(api_client, namespace, "cache")
    assert after["metadata"]["labels"] == {"team": "a"}
    assert after["spec"] == resource["spec"]
    # Removing the finalizer again, as a controller would.
    after["metadata"]["finalizers"] = []
    editor.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "cache", after)


def test_devspaces_operator_account_keeps_3_6_3_and_3_6_4_working(
    api_client, admission, judged, users
) -> None:
    """The Dev Spaces operator's account, with exactly its ClusterRole's rule for these resources
    (and none for DaemonSets), creates its resource and updates it with full Updates: admitted
    because admission-params.yaml names it. The same rights under another name are refused."""
    namespace = judged
    admission.cluster_role_for(DEVSPACES_OPERATOR, DEVSPACES_RULES)
    other = "system:serviceaccount:openshift-operators:not-listed"
    admission.cluster_role_for(other, DEVSPACES_RULES)
    wait_until(
        lambda: (
            can_i(api_client, DEVSPACES_OPERATOR, "create", GROUP, PLURAL, namespace)
            and can_i(api_client, other, "create", GROUP, PLURAL, namespace)
        ),
        30,
        "the Dev Spaces operator's ClusterRole to be in force",
    )
    assert not can_i(api_client, DEVSPACES_OPERATOR, "create", "apps", "daemonsets", namespace)

    refusal(lambda: users(other).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _puller("devspaces-image-puller")))  # fmt: skip

    devspaces = users(DEVSPACES_OPERATOR)
    labels = {
        "app.kubernetes.io/component": "kubernetes-image-puller",
        "app.kubernetes.io/part-of": "che.eclipse.org",
        "app.kubernetes.io/managed-by": "devspaces-operator",
    }
    # §3.6.3: the default images.
    created = devspaces.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _puller("devspaces-image-puller", labels=labels)
    )
    # §3.6.4: images of the user's own, written back by a full Update of the object it read.
    resource = devspaces.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "devspaces-image-puller"
    )
    resource["spec"] = {
        "images": "NAME-1=quay.io/a/one:1;NAME-2=quay.io/a/two:2;",
        "configMapName": "k8s-image-puller",
        "deploymentName": "kubernetes-image-puller",
    }
    updated = devspaces.replace_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "devspaces-image-puller", resource
    )
    assert updated["metadata"]["generation"] > created["metadata"]["generation"]
    assert stored(api_client, namespace, "devspaces-image-puller")["spec"] == resource["spec"]
    # `enable: false`: it deletes the resource (never judged).
    devspaces.delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "devspaces-image-puller"
    )


# --- What the policy must not block ---------------------------------------------------------


def test_status_writes_pass(api_client, admission, judged, users) -> None:
    """The operator patches only the status subresource: as the operator's ServiceAccount with the
    ClusterRole of manifests/operator, and as an account that may patch the status and nothing
    else (no DaemonSets: the authorizer check would refuse it). Two things let it through, each
    enough on its own: the rule names `kubernetesimagepullers`, not its `/status` subresource,
    and a status write leaves the spec as it was (the match condition)."""
    namespace = judged
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _puller("cache")
    )
    operator = f"system:serviceaccount:{namespace}:imagepuller-operator"
    admission.cluster_role_for(operator, _load("clusterrole.yaml")["rules"])
    status_only = f"system:serviceaccount:{namespace}:status-writer"
    status_rule = {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["patch"]}
    grant(api_client, namespace, "status-writer", "status-writer", [status_rule])
    assert not can_i(api_client, status_only, "create", "apps", "daemonsets", namespace)

    for user, value in ((operator, "by-operator"), (status_only, "by-status-writer")):
        wait_until(
            lambda u=user: _can_patch_status(api_client, u, namespace),
            30,
            f"{user}'s rights to be in force",
        )
        users(user).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, "cache", {"status": {"imagePullerImage": value}}
        )
        assert stored(api_client, namespace, "cache")["status"]["imagePullerImage"] == value


def _can_patch_status(api_client, user: str, namespace: str) -> bool:
    _, _, sa_namespace, _ = user.split(":")
    review = client.AuthorizationV1Api(api_client).create_subject_access_review(
        {
            "spec": {
                "user": user,
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{sa_namespace}"],
                "resourceAttributes": {
                    "verb": "patch", "group": GROUP, "resource": PLURAL,
                    "subresource": "status", "namespace": namespace,
                },
            }
        }
    )  # fmt: skip
    return bool(review.status.allowed)


def test_without_its_parameters_the_binding_refuses_everyone(
    api_client, admission, namespace
) -> None:
    """parameterNotFoundAction Deny: with its ConfigMap missing, the binding refuses every create
    and spec change, even the admin's (who may create DaemonSets): it fails closed, never open."""
    binding = admission.bind("imagepuller-admission-test-noparams", "noparams", "absent")
    client.CoreV1Api(api_client).patch_namespace(
        namespace, {"metadata": {"labels": {admission.label: "noparams"}}}
    )
    custom = client.CustomObjectsApi(api_client)

    def refused() -> str | None:
        try:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, _puller("cache"), dry_run="All"
            )
        except ApiException as err:
            # The API answers 422 (Invalid) when a binding cannot be configured.
            return str(err.body) if err.status == 422 and binding in str(err.body) else None
        return None

    body = wait_until(refused, 60, "the binding without parameters to refuse", interval=0.5)
    assert "no params found for policy binding with `Deny` parameterNotFoundAction" in body, body
    assert stored(api_client, namespace, "cache") is None
