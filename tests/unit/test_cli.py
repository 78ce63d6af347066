"""The command line, called as `main([...], env)`: output, exit codes, no tracebacks."""

import json
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from imagepuller.cli import EXIT_CONFIG, EXIT_OK, main
from imagepuller.config import load_config
from imagepuller.daemonset import build_daemonset
from imagepuller.offlinecmd import format_bytes
from tests.unit.test_manifest_yaml import strict_load

ROOT = Path(__file__).resolve().parents[2]

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


@pytest.mark.parametrize("nodes", ["0", "-3", "1000001", "99999999999999999999999999"])
def test_nodes_out_of_range_is_a_usage_error_naming_the_range(capsys, nodes):
    with pytest.raises(SystemExit) as caught:
        main(["check", "--nodes", nodes], ENV)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "argument --nodes" in err
    assert "from 1 to 1000000" in err
    assert "Traceback" not in err


def test_check_sizes_the_largest_node_count_with_the_largest_limit(capsys):
    env = {**ENV, "CACHING_MEMORY_LIMIT": "8Pi", "CACHING_MEMORY_REQUEST": "8Pi"}
    assert main(["check", "--nodes", "1000000"], env) == EXIT_OK
    # 8Pi x 5 x 1,000,000 = 40,000,000 Pi = 40,960,000,000 Ti, exactly.
    assert "x 1000000 nodes = 40960000000Ti" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (2000 * 2**20, "2000Mi"),
        (5 * 2**30, "5Gi"),
        (1536, "1536"),
        (3 * 2**20 + 1, "3.0Mi"),
        (Decimal(2000 * 2**20), "2000Mi"),
        (Decimal("1e3"), "1000"),
        # The total a reviewer's `--nodes 99999999999999999999999999` used to crash on.
        (Decimal(20 * 2**20 * 5 * 99999999999999999999999999), "9999999999999999999999999900Mi"),
        (-(2**20), "-1Mi"),
    ],
)
def test_format_bytes(amount, text):
    assert format_bytes(amount) == text


@pytest.mark.parametrize(
    "amount",
    [
        "NaN",
        "sNaN",
        "-NaN",
        "Infinity",
        "-Infinity",
        "1e999999",
        "-1e999999",
        "1e-999999",
        "1.5",
        "-0",
        "123456789012345678901234567890123456789e50",
        "3145728.5",
    ],
)
def test_format_bytes_takes_any_decimal(amount):
    text = format_bytes(Decimal(amount))
    assert text and len(text) < 40


IMAGES_1E3 = "1e3=busybox;a=1e3;b=quay.io/b:1"
AMBIGUOUS_ENV = {
    "IMAGES": IMAGES_1E3,
    "DAEMONSET_NAME": "1e3",
    "DEPLOYMENT_NAME": "0o17",
    "NAMESPACE": "2001-12-14",
    "NODE_SELECTOR": '{"k": "1e3", "1e3": "0o17", "y": "n"}',
    "DAEMONSET_ANNOTATIONS": (
        '{"a": "0o17", "b": "+.5", "c": "1e-1", "d": "yes", "e": "0x1F", "f": "1_000", '
        '"g": ".inf", "h": "on", "i": "~", "j": "null", "k": "12:30:00", "l": "2001-12-14", '
        '"m": "y", "1e3": "1E3"}'
    ),
    "TOLERATIONS": '[{"key": "1e3", "operator": "Equal", "value": "0o17", "effect": "NoSchedule"}]',
    "AFFINITY": json.dumps(
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "1e3", "operator": "In", "values": ["1e3", "+.5", "yes"]}
                            ]
                        }
                    ]
                },
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 1,
                        "preference": {"matchExpressions": [{"key": "y", "operator": "Exists"}]},
                    }
                ],
            }
        }
    ),
    "IMAGE_PULL_SECRETS": "1e3;0o17",
    "KIP_IMAGE": "0o17",
    "CACHING_CPU_LIMIT": "1e3",
    "CACHING_MEMORY_LIMIT": "1e9",
}


@pytest.mark.parametrize("openshift", [False, True])
def test_render_quotes_every_string_another_yaml_reader_would_take_for_a_number(capsys, openshift):
    assert main(["render", "--openshift"] if openshift else ["render"], AMBIGUOUS_ENV) == EXIT_OK
    out = capsys.readouterr().out
    expected = build_daemonset(load_config(AMBIGUOUS_ENV), openshift=openshift)
    # A YAML 1.1 reader that also resolves 1.2 and go-yaml numbers (as kubectl does) ...
    assert strict_load(out) == expected
    # ... and PyYAML's own.
    assert yaml.safe_load(out) == expected
    assert "name: '1e3'" in out


def test_render_reads_back_as_exactly_the_daemonset(capsys):
    assert main(["render"], ENV) == EXIT_OK
    assert yaml.safe_load(capsys.readouterr().out) == build_daemonset(load_config(ENV))


# --- output that cannot be written: real processes, real pipes and devices -----------------


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


@pytest.mark.parametrize("nodes", ["١٢", "１２", "1_2", " 12", "12 ", "+12", "0x10", "²"])
def test_nodes_other_than_ascii_digits_are_refused_naming_the_form(capsys, nodes):
    with pytest.raises(SystemExit) as caught:
        main(["check", "--nodes", nodes], ENV)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "argument --nodes" in err
    assert "digits 0-9" in err and "from 1 to 1000000" in err
    assert "Traceback" not in err
