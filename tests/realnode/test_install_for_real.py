"""Both halves of the documentation, for real: the project's own image (built without a container
engine, pushed to the cluster's registry) runs as the controller's pod on a real node, and the
images it is told to cache end up in every real node's container runtime.

- §3.6.1: the three templates processed with IMAGE (and KIP_IMAGE) = the project's image; the
  Deployment's pod creates the DaemonSet; `kubectl logs deployment/...` shows its JSON lines;
  `crictl images` on every node lists every image; `imagepuller status` says held.
- §3.6.5: the operator install (manifests/operator) with the project's image, then the
  documented resource → its images in `crictl images`, its status Ready on the real nodes.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml
from kubernetes import client

from imagepuller.resource import GROUP, PLURAL, VERSION
from tests.cluster.test_install import TEMPLATES, as_list, kubectl, process
from tests.realnode.conftest import REAL_NODES, REPO, crictl_images, imagepuller_status
from tests.waiting import wait_until

NAME = "kubernetes-image-puller"


@pytest.fixture(scope="session")
def project_image(cluster) -> str:
    """The project's image, built by hack/build-image-rootfs.sh (no engine) and pushed to the
    cluster's registry; ``host/imagepuller:test`` (the build prints it with its digest)."""
    ref = f"{cluster.registry.host}/imagepuller:test"
    built = subprocess.run(
        ["bash", str(REPO / "hack" / "build-image-rootfs.sh")],
        env={**os.environ, "IMAGE": ref},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert built.stdout.strip().splitlines()[-1].startswith(ref.rsplit(":", 1)[0] + "@sha256:")
    return ref


def images_held_everywhere(cluster, refs: list[str]) -> None:
    def held() -> bool:
        return all(set(refs) <= set(crictl_images(cluster, node)) for node in REAL_NODES)

    wait_until(held, 240, f"{refs} in crictl images on {REAL_NODES}")


def pod_of(core, namespace: str, selector: str):
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    running = [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
    return running[0] if running else None


def test_the_templates_install_runs_the_projects_image_on_a_real_node(
    cluster, api_client, namespace, project_image, scratch_image
):
    images = {"editor": scratch_image("doc-editor"), "tools": scratch_image("doc-tools")}
    repository, tag = project_image.rsplit(":", 1)
    params = {
        "configmap.yaml": {
            "IMAGES": "".join(f"{n}={r};" for n, r in images.items()),
            "NAMESPACE": namespace,
            "KIP_IMAGE": project_image,  # one image: the controller and the copied sleep
        },
        "app.yaml": {"IMAGE": repository, "IMAGE_TAG": tag},
    }
    for template in TEMPLATES:  # oc process -f T -p ... | oc apply -f -, in the documented order
        objects = process(template, params.get(template))
        kubectl(cluster, "apply", "-n", namespace, "-f", "-", stdin=as_list(objects))

    core = client.CoreV1Api(api_client)
    controller = wait_until(
        lambda: pod_of(core, namespace, "app.kubernetes.io/component=controller"),
        240,
        "the controller's pod to run",
    )
    assert controller.spec.node_name in REAL_NODES
    assert controller.spec.containers[0].image == project_image
    images_held_everywhere(cluster, list(images.values()))

    def logged() -> list[dict]:
        out = kubectl(cluster, "logs", "-n", namespace, f"deployment/{NAME}").stdout
        events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        return events if any(e.get("event") == "daemonset_ready" for e in events) else []

    events = wait_until(logged, 120, "daemonset_ready in kubectl logs")
    assert all("event" in e and "level" in e for e in events)  # every line a JSON event
    code, document = imagepuller_status(cluster, namespace)
    assert code == 0, document
    (puller,) = document["pullers"]
    assert (puller["ready"], puller["desired"], puller["holding"]) == (True, 2, 2)
    assert {n["node"]: n["state"] for n in puller["nodes"]} == dict.fromkeys(REAL_NODES, "held")


def test_the_operator_install_serves_the_documented_resource_on_real_nodes(
    cluster, api_client, project_image, scratch_image
):
    objects = list(
        yaml.safe_load_all(
            kubectl(cluster, "kustomize", str(REPO / "manifests" / "operator")).stdout
        )
    )
    for obj in objects:
        if obj["kind"] == "Deployment":
            (container,) = obj["spec"]["template"]["spec"]["containers"]
            container["image"] = project_image  # kustomize edit set image, as an admin would
            # The operator's own image may be a resource's imagePullerImage (policy.py).
            container["env"].append({"name": "OPERATOR_IMAGE", "value": project_image})
    kubectl(cluster, "apply", "--server-side", "-f", "-", stdin=as_list(objects))
    custom = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    try:
        kubectl(cluster, "create", "namespace", "k8s-image-puller")
        images = {"java": scratch_image("doc-java"), "node": scratch_image("doc-node")}
        resource = yaml.safe_load((REPO / "manifests" / "operator" / "example.yaml").read_text())
        resource["spec"]["images"] = "".join(f"{n}={r};" for n, r in images.items())
        resource["spec"]["imagePullerImage"] = project_image
        kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(resource))
        operator = wait_until(
            lambda: pod_of(core, "imagepuller-operator", "app.kubernetes.io/component=operator"),
            240,
            "the operator's pod to run",
        )
        assert operator.spec.node_name in REAL_NODES

        def ready() -> dict | None:
            got = custom.get_namespaced_custom_object(
                GROUP, VERSION, "k8s-image-puller", PLURAL, resource["metadata"]["name"]
            )
            conditions = {c["type"]: c for c in (got.get("status") or {}).get("conditions", [])}
            nodes = (got.get("status") or {}).get("nodes")
            ok = conditions.get("Ready", {}).get("status") == "True"
            return got if ok and nodes == {"desired": 2, "ready": 2} else None

        wait_until(ready, 240, "the resource Ready on the 2 real nodes")
        images_held_everywhere(cluster, list(images.values()))

        # An image the registry does not have: the resource's status carries the kubelet's
        # reason and the registry's answer, and the nodes keep what they hold.
        missing = f"{cluster.registry.host}/test/never-pushed:2"
        resource["spec"]["images"] += f"missing={missing};"
        kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(resource))

        def failing() -> list | None:
            got = custom.get_namespaced_custom_object(
                GROUP, VERSION, "k8s-image-puller", PLURAL, resource["metadata"]["name"]
            )
            found = [
                f
                for f in (got.get("status") or {}).get("failures") or []
                if f.get("image") == missing
            ]
            return [got, found] if found else None

        # The rollout stops at the first node whose new pod cannot pull (maxUnavailable 0):
        # that node reports the failure; no node holds this spec's three images.
        got, found = wait_until(failing, 240, "the pull failure in the resource's status")
        for failure in found:
            assert failure["node"] in REAL_NODES
            assert failure["reason"] in ("ErrImagePull", "ImagePullBackOff"), failure
            assert "not found" in failure["message"], failure
        conditions = {c["type"]: c for c in got["status"]["conditions"]}
        assert conditions["Ready"]["status"] == "False"
        assert conditions["Degraded"]["reason"] == "ImagesNotCached"
        assert got["status"]["nodes"] == {"desired": 2, "ready": 0}, got["status"]
        images_held_everywhere(cluster, list(images.values()))  # the old pods keep them
    finally:
        kubectl(cluster, "delete", "namespace", "k8s-image-puller", "--wait=false")
        kubectl(
            cluster, "delete", "--wait=false", "--ignore-not-found", "-f", "-",
            stdin=as_list([o for o in objects if o["kind"] != "CustomResourceDefinition"]),
        )  # fmt: skip


def test_the_helm_chart_runs_the_puller_on_real_nodes_and_uninstalls_clean(
    cluster, api_client, namespace, project_image, scratch_image, helm_tools, tmp_path
):
    """`helm install` with the project's image: its Deployment's pod runs on a real node and
    the images reach every node's runtime; `helm upgrade` with one more image is applied live
    by that same pod; `helm uninstall` leaves nothing of the release."""
    from tests.chart.helmchart import CHART, helm
    from tests.holding import HoldingWatcher

    images = {"editor": scratch_image("helm-editor"), "tools": scratch_image("helm-tools")}
    listed = "".join(f"{n}={r};" for n, r in images.items())

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return helm(helm_tools, *args, "-n", namespace, kubeconfig=cluster.kubeconfig,
                    home=tmp_path / "helm")  # fmt: skip

    sets = ["--set-string", f"image={project_image}", "--set-string",
            f"puller.config.KIP_IMAGE={project_image}"]  # fmt: skip
    installed = run("install", "imagepuller", str(CHART), *sets,
                    "--set-string", f"puller.config.IMAGES={listed}")  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    controller = wait_until(
        lambda: pod_of(core, namespace, "app.kubernetes.io/component=controller"),
        240,
        "the controller's pod to run",
    )
    assert controller.spec.node_name in REAL_NODES
    images_held_everywhere(cluster, list(images.values()))

    def ready_with(count: int) -> dict | None:
        code, document = imagepuller_status(cluster, namespace)
        if code != 0:
            return None
        (puller,) = document["pullers"]
        held = puller["ready"] and puller["holding"] == 2
        return puller if held and len(puller["images"]) == count else None

    wait_until(lambda: ready_with(2), 240, "imagepuller status: ready, 2 of 2 nodes hold 2 images")

    # One more image, applied live: the same controller pod, no node without a ready holder.
    images["viewer"] = scratch_image("helm-viewer")
    selector = f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=image-cache"
    watcher = HoldingWatcher(api_client, namespace, selector).start_and_wait()
    upgraded = run("upgrade", "imagepuller", str(CHART), "--reuse-values", "--set-string",
                   f"puller.config.IMAGES={listed}viewer={images['viewer']};")  # fmt: skip
    assert upgraded.returncode == 0, upgraded.stderr
    images_held_everywhere(cluster, list(images.values()))
    wait_until(lambda: ready_with(3), 240, "imagepuller status: ready, 3 images on 2 nodes")
    samples = watcher.stop()
    assert all(held >= set(REAL_NODES) for _, held in samples), samples
    assert pod_of(core, namespace, "app.kubernetes.io/component=controller").metadata.uid == (
        controller.metadata.uid
    )

    uninstalled = run("uninstall", "imagepuller", "--wait", "--timeout", "120s")
    assert uninstalled.returncode == 0, uninstalled.stderr
    wait_until(
        lambda: (
            not apps.list_namespaced_daemon_set(namespace).items
            and not core.list_namespaced_pod(namespace).items
        ),
        240,
        "no DaemonSet and no pod left in the namespace",
    )
    assert not apps.list_namespaced_deployment(namespace).items
    assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items] == [
        "kube-root-ca.crt"
    ]
