"""IMAGES_FROM on the real control plane: the lists served by a local HTTP(S) server on
127.0.0.1, `imagepuller run` as a process, every claim read back from the API."""

from __future__ import annotations

import os
import subprocess
import sys

from imagepuller.config import load_config
from tests.cluster.conftest import NAME, make_refresh_due, read_ds
from tests.listserver import ListServer
from tests.waiting import wait_until

DIGEST = "a" * 64
# The devfile registry's shape: sorted, unique, digest-pinned, a final newline.
DEVFILE_LIST = (
    f"quay.io/devfile/universal-developer-image@sha256:{DIGEST}\n"
    "registry.access.redhat.com/ubi8/python-311:latest\n"
).encode()
# The plugin registry's shape: unsorted, repeated, no final newline (and CRLF, a comment).
PLUGIN_LIST = (
    b"quay.io/che-incubator/che-code:latest\r\n"
    b"# editors\r\n"
    b"quay.io/che-incubator/che-idea:next\r\n"
    b"quay.io/che-incubator/che-code:latest"
)
EXPECTED = {
    "che-code": "quay.io/che-incubator/che-code:latest",
    "che-idea": "quay.io/che-incubator/che-idea:next",
    "universal-developer-image": f"quay.io/devfile/universal-developer-image@sha256:{DIGEST}",
    "python-311": "registry.access.redhat.com/ubi8/python-311:latest",
}


def containers(apps, namespace) -> dict[str, str]:
    ds = read_ds(apps, namespace)
    return {c.name: c.image for c in ds.spec.template.spec.containers}


def every_node_holds(apps, namespace, nodes: int) -> bool:
    status = read_ds(apps, namespace).status
    return (
        status.desired_number_scheduled == nodes
        and status.updated_number_scheduled == nodes
        and status.number_available == nodes
    )


def list_events(core, namespace, reason):
    return core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={NAME},reason={reason}"
    ).items


def test_images_from_caches_the_lists_and_a_new_image_renames_nothing(
    start_controller, apps, namespace
):
    with ListServer({"/plugins.txt": PLUGIN_LIST, "/devfiles.txt": DEVFILE_LIST}) as server:
        controller = start_controller(
            IMAGES="",
            IMAGES_FROM=f"{server.url('/plugins.txt')} {server.url('/devfiles.txt')}",
        )
        controller.wait_for("daemonset_ready", 90, where=lambda e: e["desired"] == 3)
        assert containers(apps, namespace) == EXPECTED
        assert every_node_holds(apps, namespace, 3)
        uid = read_ds(apps, namespace).metadata.uid

        # A new editor, and one whose last path segment collides with che-code's.
        server.files["/plugins.txt"] = PLUGIN_LIST + (
            b"\nquay.io/che-incubator/aaa-editor:1\nregistry.example.com/fork/che-code:2\n"
        )
        make_refresh_due(apps, namespace)
        controller.wait_for("daemonset_updated", 30)
        controller.wait_for("daemonset_ready", 90, where=lambda e: e["desired"] == 3)
        after = containers(apps, namespace)
        assert {name: after.get(name) for name in EXPECTED} == EXPECTED  # none renamed
        assert after["aaa-editor"] == "quay.io/che-incubator/aaa-editor:1"
        (fork,) = [n for n, image in after.items() if image.endswith("fork/che-code:2")]
        assert fork.startswith("che-code-") and len(fork) <= 63
        assert len(after) == 6
        assert read_ds(apps, namespace).metadata.uid == uid  # rolled in place
        assert every_node_holds(apps, namespace, 3)


def test_a_list_server_going_away_keeps_every_image_and_reports_it(
    start_controller, apps, core, namespace
):
    server = ListServer({"/plugins.txt": PLUGIN_LIST}).start()
    try:
        controller = start_controller(IMAGES="", IMAGES_FROM=server.url("/plugins.txt"))
        controller.wait_for("daemonset_ready", 90, where=lambda e: e["desired"] == 3)
        before = containers(apps, namespace)
        assert set(before) == {"che-code", "che-idea"}
    finally:
        server.stop()
    make_refresh_due(apps, namespace)
    failed = controller.wait_for("image_list_failed", 30)
    assert failed["kept_images"] == 2 and "connect" in failed["reason"]
    controller.wait_for("refresh_started", 30)  # the refresh goes on, with every image
    controller.wait_for("daemonset_ready", 90, where=lambda e: e["desired"] == 3)
    assert containers(apps, namespace) == before
    assert every_node_holds(apps, namespace, 3)
    (event,) = wait_until(
        lambda: list_events(core, namespace, "ImageListUnavailable"), 10, "the Warning Event"
    )
    assert event.type == "Warning" and event.involved_object.kind == "DaemonSet"
    assert "/plugins.txt" in event.message and "stay cached" in event.message


def test_images_from_over_https_with_an_internal_ca(start_controller, apps, namespace, tmp_path):
    with ListServer({"/devfiles.txt": DEVFILE_LIST}).with_tls(tmp_path) as server:
        assert server.ca_pem is not None
        controller = start_controller(
            IMAGES="tools=quay.io/me/tools:1;",
            IMAGES_FROM=server.url("/devfiles.txt"),
            IMAGES_FROM_CA_BUNDLE=server.ca_pem,
        )
        controller.wait_for("daemonset_ready", 90, where=lambda e: e["desired"] == 3)
        assert containers(apps, namespace) == {
            "tools": "quay.io/me/tools:1",
            "universal-developer-image": EXPECTED["universal-developer-image"],
            "python-311": EXPECTED["python-311"],
        }
        assert server.requests == ["/devfiles.txt"]


def test_the_images_command_patches_a_configmap(cluster, core, namespace, tmp_path):
    core.create_namespaced_config_map(
        namespace,
        {"metadata": {"name": "puller"}, "data": {"IMAGES": "mine=quay.io/me/tools:1;"}},
    )
    patch = tmp_path / "patch.yaml"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    with ListServer({"/plugins.txt": PLUGIN_LIST}) as server:
        made = subprocess.run(
            [sys.executable, "-m", "imagepuller", "images", server.url("/plugins.txt"),
             "--merge", "mine=quay.io/me/tools:1;", "-o", "configmap-patch"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
    patch.write_text(made.stdout)
    subprocess.run(
        ["kubectl", "-n", namespace, "patch", "configmap", "puller", "--patch-file", str(patch)],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    value = core.read_namespaced_config_map("puller", namespace).data["IMAGES"]
    images = load_config({"IMAGES": value}).images
    assert [(i.name, i.image) for i in images] == [
        ("mine", "quay.io/me/tools:1"),
        ("che-code", EXPECTED["che-code"]),
        ("che-idea", EXPECTED["che-idea"]),
    ]
