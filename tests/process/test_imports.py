"""What each command loads: start-up time and memory are mostly imports (issue 11).

Each check runs in a fresh interpreter, where ``sys.modules`` shows exactly what was loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

IMAGES = "java=quay.io/eclipse/che-java17-maven:next"


def loaded_after(script: str, **env: str) -> set[str]:
    """The modules loaded once ``script`` has run in a new interpreter."""
    code = textwrap.dedent(script) + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "IMAGES": IMAGES, **env},
        timeout=60,
        check=True,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    "argv",
    [["render"], ["check"], ["images", "LIST"], ["--version"]],
    ids=["render", "check", "images", "version"],
)
def test_commands_that_need_no_cluster_do_not_load_the_kubernetes_client(argv, tmp_path):
    image_list = tmp_path / "images.txt"
    image_list.write_text("quay.io/a/b:1\n")
    argv = [str(image_list) if arg == "LIST" else arg for arg in argv]
    modules = loaded_after(
        f"""
        import contextlib, io
        from imagepuller.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            main({argv!r})
        """
    )
    assert "imagepuller.cli" in modules
    assert not {
        m for m in modules if m.split(".")[0] in ("kubernetes", "pydantic", "urllib3", "structlog")
    }


def test_only_render_and_status_load_yaml():
    assert "yaml" not in loaded_after("from imagepuller.cli import main; main(['check'])")
    assert "yaml" in loaded_after("from imagepuller.cli import main; main(['render'])")


def test_the_api_calls_load_no_generated_api_class_or_model():
    # Every call the puller makes, answered by a fake REST layer: the generated APIs and their
    # pydantic models (hundreds of classes, about 26 MiB) must never be imported.
    modules = loaded_after(
        """
        import json
        from types import SimpleNamespace
        from unittest import mock

        from kubernetes import client
        import imagepuller.operatorcmd, imagepuller.runcmd
        from imagepuller import kube as k

        class Answer:
            status, reason = 200, "OK"
            data = json.dumps({"metadata": {"resourceVersion": "1"}, "items": []}).encode()

            def release_conn(self):
                pass

        api_client = client.ApiClient(client.Configuration(host="https://api.test"))
        with mock.patch.object(
            api_client.rest_client, "request", return_value=SimpleNamespace(response=Answer())
        ):
            kube = k.Kube(api_client)
            kube.get_daemonset("ns", "ds")
            kube.get_deployment("ns", "d")
            kube.list_pods("ns", "a=b")
            kube.list_events("ns", "involvedObject.name=ds")
            kube.list_nodes()
            kube.list_daemonsets(None, "a=b")
            kube.is_openshift()
            body = {"metadata": {"namespace": "ns", "name": "ds"}}
            kube.create_daemonset(body, dry_run=True)
            kube.replace_daemonset(body)
            kube.patch_daemonset("ns", "ds", {}, uid="u")
            kube.delete_daemonset("ns", "ds")
            kube.get_object(k.CONFIGMAPS, "ns", "cm")
            kube.merge_patch(k.PULLERS, "ns", "p", {}, subresource="status")
        """
    )
    assert "imagepuller.kube" in modules
    generated = {
        m for m in modules if m.startswith(("kubernetes.client.api.", "kubernetes.client.models."))
    }
    assert not generated


def test_run_loads_neither_the_status_nor_the_operator_command():
    modules = loaded_after("import imagepuller.cli, imagepuller.runcmd")
    assert "kubernetes" in modules
    assert not modules & {
        "imagepuller.statuscmd",
        "imagepuller.cachestatus",
        "imagepuller.cachetable",
        "imagepuller.operatorcmd",
        "imagepuller.operator",
        "imagepuller.lease",
        "imagepuller.leaserecord",
        "imagepuller.nodepods",
        "imagepuller.nodeselection",
        "prometheus_client",  # only with METRICS_PORT set
    }
