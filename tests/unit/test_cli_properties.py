"""`check` and `render` over generated environments: an exit code, never a traceback.

Every setting `load_config` reads gets arbitrary text, plausible values (valid or nearly so) or
JSON. Whatever the environment, `check`, `check --nodes N`, `render` and `render --openshift`
either succeed or report a configuration (or usage) error; a successful `render` reads back,
with a reader stricter than PyYAML's, as exactly the DaemonSet the controller would create.
"""

from __future__ import annotations

import contextlib
import io
import json

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from imagepuller.cli import EXIT_CONFIG, EXIT_OK, EXIT_USAGE, MAX_NODES, main
from imagepuller.config import load_config
from imagepuller.daemonset import build_daemonset
from imagepuller.offlinecmd import format_bytes
from tests.unit.test_manifest_yaml import strict_load

TRICKY = ["", " ", "0", "-1", "1e3", "0o17", "+.5", "yes", "~", "null", "nan", "inf", "\x00", "é"]

text = st.text(max_size=40)
tricky = st.sampled_from(TRICKY)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | tricky
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=12) | tricky, children, max_size=4)
    ),
    max_leaves=12,
)
any_json = json_values.map(json.dumps)

dns_label = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?\Z", fullmatch=True)
dns_name = st.from_regex(r"\A[a-z0-9]([-a-z0-9.]{0,12}[a-z0-9])?\Z", fullmatch=True)
image_ref = st.sampled_from(
    [
        "busybox",
        "quay.io/team/image:1",
        "1e3",
        "localhost:5000/a/b:latest",
        "registry.example.com/x@sha256:" + "a" * 64,
        "Upper/case",
        "a@sha256:short",
        "",
    ]
) | st.from_regex(r"\A[a-z0-9]{1,6}(/[a-z0-9._-]{1,6})?(:[A-Za-z0-9_.-]{1,8})?\Z", fullmatch=True)
valid_image_ref = st.sampled_from(
    [
        "busybox",
        "1e3",
        "0o17",
        "quay.io/team/image:1",
        "localhost:5000/a/b:latest",
        "registry.example.com/x@sha256:" + "a" * 64,
        "busybox:1e3",
    ]
)
qualified_key = dns_name | st.sampled_from(["1e3", "y", "0o17", "example.com/key", "a.b/1e3"])
label_value = dns_label | st.sampled_from(["1e3", "0o17", ".5", "yes", "y", "N", "1_000"])
valid_labels = st.dictionaries(qualified_key, label_value, max_size=4).map(json.dumps)
valid_annotations = st.dictionaries(qualified_key, st.text(max_size=12) | tricky, max_size=4).map(
    json.dumps
)
valid_toleration = st.one_of(
    st.fixed_dictionaries(
        {"key": qualified_key, "operator": st.just("Exists")},
        optional={"effect": st.sampled_from(["NoSchedule", "PreferNoSchedule"])},
    ),
    st.fixed_dictionaries(
        {"key": qualified_key, "operator": st.just("Equal"), "value": label_value},
        optional={"effect": st.sampled_from(["", "NoSchedule"])},
    ),
    st.fixed_dictionaries(
        {
            "key": qualified_key,
            "operator": st.just("Exists"),
            "effect": st.just("NoExecute"),
            "tolerationSeconds": st.integers(0, 10**6),
        }
    ),
)
valid_tolerations = st.lists(valid_toleration, max_size=3).map(json.dumps)
valid_expression = st.one_of(
    st.fixed_dictionaries(
        {
            "key": qualified_key,
            "operator": st.sampled_from(["In", "NotIn"]),
            "values": st.lists(label_value, min_size=1, max_size=3),
        }
    ),
    st.fixed_dictionaries(
        {"key": qualified_key, "operator": st.sampled_from(["Exists", "DoesNotExist"])}
    ),
)
valid_node_term = st.fixed_dictionaries(
    {"matchExpressions": st.lists(valid_expression, min_size=1, max_size=2)}
)
valid_affinity = st.fixed_dictionaries(
    {},
    optional={
        "nodeAffinity": st.fixed_dictionaries(
            {},
            optional={
                "requiredDuringSchedulingIgnoredDuringExecution": st.fixed_dictionaries(
                    {"nodeSelectorTerms": st.lists(valid_node_term, min_size=1, max_size=2)}
                ),
                "preferredDuringSchedulingIgnoredDuringExecution": st.lists(
                    st.fixed_dictionaries(
                        {"weight": st.integers(1, 100), "preference": valid_node_term}
                    ),
                    max_size=2,
                ),
            },
        )
    },
).map(json.dumps)
images = (
    st.lists(st.tuples(dns_label | tricky, image_ref), max_size=5).map(
        lambda pairs: ";".join(f"{name}={image}" for name, image in pairs)
    )
    | text
)
quantity = st.sampled_from(
    ["10Mi", "20Mi", "1Gi", "8Pi", "9Ei", "1e9", "1e3", ".05", ".2", "200m", "1", "0", "0.5"]
) | st.from_regex(r"\A[+-]?[0-9]{1,20}(\.[0-9]{0,4})?(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|e[0-9]{1,3})?\Z")
hours = st.sampled_from(["1", "0.5", "0.001", "8760", "8761", "0", "1e3", "nan", "inf"]) | (
    st.floats(min_value=0, max_value=10_000).map(str)
)
duration = st.sampled_from(["5m", "300s", "1h", "24h", "25h", "0s", "1.5h", "1h30m", "1e3s", "-5m"])
string_map = st.dictionaries(
    dns_name | st.sampled_from(["1e3", "y", "example.com/key", "bad key!"]),
    dns_label | tricky | st.text(max_size=12),
    max_size=4,
).map(json.dumps)
toleration = st.fixed_dictionaries(
    {},
    optional={
        "key": dns_name | tricky,
        "operator": st.sampled_from(["Exists", "Equal", "In"]) | json_scalars,
        "value": dns_label | tricky | json_scalars,
        "effect": st.sampled_from(["", "NoSchedule", "PreferNoSchedule", "NoExecute"]),
        "tolerationSeconds": json_scalars,
    },
)
tolerations = st.lists(toleration | json_values, max_size=3).map(json.dumps)
match_expression = st.fixed_dictionaries(
    {
        "key": dns_name | tricky,
        "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]),
    },
    optional={"values": st.lists(dns_label | tricky, max_size=3)},
)
affinity = st.fixed_dictionaries(
    {
        "nodeAffinity": st.fixed_dictionaries(
            {},
            optional={
                "requiredDuringSchedulingIgnoredDuringExecution": st.fixed_dictionaries(
                    {
                        "nodeSelectorTerms": st.lists(
                            st.fixed_dictionaries(
                                {"matchExpressions": st.lists(match_expression, max_size=2)}
                            ),
                            max_size=2,
                        )
                    }
                ),
                "preferredDuringSchedulingIgnoredDuringExecution": st.lists(
                    st.fixed_dictionaries(
                        {
                            "weight": st.integers(-1, 101),
                            "preference": st.fixed_dictionaries(
                                {"matchExpressions": st.lists(match_expression, max_size=2)}
                            ),
                        }
                    ),
                    max_size=2,
                ),
            },
        )
    }
).map(json.dumps)


def choice(*valid: str) -> st.SearchStrategy[str]:
    return st.sampled_from(valid) | st.sampled_from([v.upper() for v in valid]) | text


SETTINGS: dict[str, st.SearchStrategy[str]] = {
    "IMAGES": images,
    "CACHING_INTERVAL_HOURS": hours | text,
    "CACHING_MEMORY_REQUEST": quantity | text,
    "CACHING_MEMORY_LIMIT": quantity | text,
    "CACHING_CPU_REQUEST": quantity | text,
    "CACHING_CPU_LIMIT": quantity | text,
    "DAEMONSET_NAME": dns_label | tricky | text,
    "DEPLOYMENT_NAME": dns_name | tricky | text,
    "NAMESPACE": dns_label | tricky | text,
    "NODE_SELECTOR": string_map | any_json | text,
    "AFFINITY": affinity | any_json | text,
    "TOLERATIONS": tolerations | any_json | text,
    "IMAGE_PULL_SECRETS": st.lists(dns_name | tricky, max_size=3).map(";".join) | text,
    "DAEMONSET_ANNOTATIONS": string_map | any_json | text,
    "KIP_IMAGE": image_ref | text,
    "READY_TIMEOUT": duration | text,
    "LOG_FORMAT": choice("auto", "json", "console"),
    "LOG_LEVEL": choice("debug", "info", "warning", "error"),
    "REFRESH_STRATEGY": choice("rolling", "recreate"),
    "REFRESH_MAX_SURGE": st.sampled_from(["10%", "0", "1", "100%", "101%", "1.5"]) | text,
    "CONFIGMAP_NAME": dns_name | tricky | text,
}
# Valid values, so that `render` gets to run: every setting may be set, none is wrong.
valid_images = st.lists(
    st.tuples(dns_label.filter(lambda name: name != "copy-sleep"), valid_image_ref),
    min_size=1,
    max_size=4,
    unique_by=lambda pair: pair[0],
).map(lambda pairs: ";".join(f"{name}={image}" for name, image in pairs))
VALID: dict[str, st.SearchStrategy[str]] = {
    "CACHING_INTERVAL_HOURS": st.sampled_from(["1", "0.5", "0.001", "8760", "24"]),
    "CACHING_MEMORY_REQUEST": st.sampled_from(["1", "1Mi", "10Mi", "1e6"]),
    "CACHING_MEMORY_LIMIT": st.sampled_from(["20Mi", "1Gi", "8Pi", "1e9", "1e8"]),
    "CACHING_CPU_REQUEST": st.sampled_from([".05", "1m", "100m", "1e-3"]),
    "CACHING_CPU_LIMIT": st.sampled_from([".2", "1", "2", "1e3", "0.5"]),
    "DAEMONSET_NAME": dns_label | st.sampled_from(["1e3", "0o17", "0x1f", "2001-12-14", "y"]),
    "DEPLOYMENT_NAME": dns_name | st.sampled_from(["1e3", "1.5", "0b1", "1e-1"]),
    "NAMESPACE": dns_label | st.sampled_from(["1e3", "12", "n", "on"]),
    "NODE_SELECTOR": valid_labels,
    "AFFINITY": valid_affinity,
    "TOLERATIONS": valid_tolerations,
    "IMAGE_PULL_SECRETS": st.lists(dns_name | st.sampled_from(["1e3", "0o17"]), max_size=3).map(
        lambda names: ";".join(dict.fromkeys(names))
    ),
    "DAEMONSET_ANNOTATIONS": valid_annotations,
    "KIP_IMAGE": valid_image_ref,
    "READY_TIMEOUT": st.sampled_from(["5m", "300s", "1h", "24h", "1.5h", "1h30m"]),
    "LOG_FORMAT": st.sampled_from(["auto", "json", "console", "JSON"]),
    "LOG_LEVEL": st.sampled_from(["debug", "info", "warning", "error", "Info"]),
    "REFRESH_STRATEGY": st.sampled_from(["rolling", "recreate", "RECREATE"]),
    "REFRESH_MAX_SURGE": st.sampled_from(["10%", "1", "100%", "07", "007%"]),
    "CONFIGMAP_NAME": dns_name,
}
valid_environments = st.fixed_dictionaries({"IMAGES": valid_images}, optional=VALID)
# Valid but for one setting, which gets anything.
one_wrong = st.sampled_from(sorted(SETTINGS)).flatmap(
    lambda name: st.tuples(st.just(name), SETTINGS[name])
)
nearly_valid_environments = st.builds(
    lambda env, wrong: {**env, wrong[0]: wrong[1]}, valid_environments, one_wrong
)
environments = (
    valid_environments | nearly_valid_environments | st.fixed_dictionaries({}, optional=SETTINGS)
)
node_counts = (
    st.integers(1, MAX_NODES).map(str)
    | st.integers().map(str)
    | st.sampled_from(["0", "1000001", "99999999999999999999999999", "1_000", " 7 ", "5.0"])
    | text
)


# yaml.safe_load's reader, in C where PyYAML has it (the pure-Python one would take most of the
# time this test is given).
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def run_cli(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """``main(argv, env)`` in-process: (exit code, stdout, stderr); argparse's exit included."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv, env)
        except SystemExit as exit_:  # only argparse exits; anything else fails the test
            code = exit_.code if isinstance(exit_.code, int) else -1
            assert code == EXIT_USAGE, err.getvalue()
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def as_json(value: object) -> str:
    # Compares NaN equal to NaN, 1 unequal to 1.0 and True; whatever the strict reader did not
    # take for a string (NotAString) shows as its repr and differs.
    return json.dumps(value, sort_keys=True, default=repr)


@settings(max_examples=200, deadline=None, database=None)
@given(env=environments, nodes=node_counts)
def test_check_and_render_exit_cleanly_for_any_environment(env, nodes):
    code, out, err = run_cli(["check"], env)
    assert code in (EXIT_OK, EXIT_CONFIG)
    if code == EXIT_CONFIG:
        assert err.startswith("imagepuller: invalid configuration:") and out == ""
    else:
        assert out.startswith("configuration is valid\n") and err == ""

    code_nodes, out_nodes, err_nodes = run_cli(["check", "--nodes", nodes], env)
    if code_nodes == EXIT_USAGE:
        assert "argument --nodes" in err_nodes
    else:
        assert code_nodes == code
        if code == EXIT_OK:
            assert "memory reserved in total" in out_nodes

    for argv, openshift in ((["render"], False), (["render", "--openshift"], True)):
        code_render, out_render, err_render = run_cli(argv, env)
        assert code_render == code
        if code_render != EXIT_OK:
            continue
        assert err_render == ""
        manifest = yaml.load(out_render, Loader=SafeLoader)  # noqa: S506 - safe_load, in C
        assert isinstance(manifest, dict) and manifest["kind"] == "DaemonSet"
        expected = as_json(build_daemonset(load_config(env), openshift=openshift))
        assert as_json(manifest) == expected
        if not openshift:  # the same strings either way; the strict reader is slow
            assert as_json(strict_load(out_render)) == expected


@settings(max_examples=200, deadline=None, database=None)
@given(amount=st.decimals() | st.integers(min_value=-(10**60), max_value=10**60))
def test_format_bytes_takes_any_amount(amount):
    text = format_bytes(amount)
    assert text and len(text) < 50
