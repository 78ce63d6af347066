"""The command line, called as `main([...], env)`: output, exit codes, no tracebacks."""

import pytest
import yaml

from imagepuller.cli import EXIT_CONFIG, EXIT_OK, format_bytes, main

ENV = {"IMAGES": "a=quay.io/a:1;b=quay.io/b:1;c=quay.io/c:1;d=quay.io/d:1;e=quay.io/e:1"}


def test_check_prints_the_documentation_sizing_example(capsys):
    # The documentation's example: 20Mi limit, 5 images, 20 nodes -> 2000Mi.
    assert main(["check", "--nodes", "20"], ENV) == EXIT_OK
    out = capsys.readouterr().out
    assert "configuration is valid" in out
    assert "memory reserved in total: 20Mi x 5 images x 20 nodes = 2000Mi" in out
    assert out.index("  a: quay.io/a:1") < out.index("  e: quay.io/e:1")


def test_check_without_nodes_gives_the_per_node_figure(capsys):
    assert main(["check"], {**ENV, "CACHING_MEMORY_LIMIT": "1Gi"}) == EXIT_OK
    assert "memory reserved per node: 1Gi x 5 images = 5Gi" in capsys.readouterr().out


def test_render_prints_the_daemonset_yaml(capsys):
    assert main(["render"], ENV) == EXIT_OK
    manifest = yaml.safe_load(capsys.readouterr().out)
    assert manifest["kind"] == "DaemonSet"
    spec = manifest["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["a", "b", "c", "d", "e"]
    assert spec["securityContext"]["runAsUser"] == 65532


def test_render_openshift_has_no_fixed_uid(capsys):
    assert main(["render", "--openshift"], ENV) == EXIT_OK
    manifest = yaml.safe_load(capsys.readouterr().out)
    assert "runAsUser" not in manifest["spec"]["template"]["spec"]["securityContext"]


@pytest.mark.parametrize("command", [["run"], ["render"], ["check"]])
def test_bad_configuration_exits_non_zero_with_the_message_and_no_traceback(capsys, command):
    assert main(command, {"IMAGES": "x", "CACHING_INTERVAL_HOURS": "soon"}) == EXIT_CONFIG
    captured = capsys.readouterr()
    assert "invalid configuration" in captured.err
    assert "IMAGES entry 1 'x'" in captured.err
    assert "CACHING_INTERVAL_HOURS='soon'" in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_run_without_credentials_exits_non_zero(capsys, tmp_path):
    env = {**ENV, "KUBECONFIG": str(tmp_path / "nope"), "LOG_FORMAT": "json"}
    assert main(["run"], env) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert '"event": "no_cluster_access"' in err
    assert "not a readable file" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["check", "--nodes", "zero"], ENV)
    assert caught.value.code == 2
    assert "whole number of nodes" in capsys.readouterr().err


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--help"], ENV)
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "render", "check"):
        assert command in out


@pytest.mark.parametrize(
    ("amount", "text"),
    [(2000 * 2**20, "2000Mi"), (5 * 2**30, "5Gi"), (1536, "1536"), (3 * 2**20 + 1, "3.0Mi")],
)
def test_format_bytes(amount, text):
    assert format_bytes(amount) == text


def test_run_warns_when_namespace_is_not_the_pods_own(capsys, tmp_path):
    env = {
        **ENV,
        "NAMESPACE": "k8s-image-puller",
        "POD_NAMESPACE": "tools",
        "KUBECONFIG": str(tmp_path / "nope"),
        "LOG_FORMAT": "json",
    }
    main(["run"], env)
    err = capsys.readouterr().err
    assert '"event": "namespace_mismatch"' in err
    assert "Set NAMESPACE" in err and "tools" in err
