"""Configuration: every variable, its default, and every kind of error."""

import json

import pytest

from imagepuller.config import ConfigError, load_config
from imagepuller.imageparsers import CachedImage
from imagepuller.settings import DEFAULT_KIP_IMAGE
from imagepuller.valueparsers import quantity_value
from tests.recording_env import RecordingEnv

BASE = {"IMAGES": "java=quay.io/eclipse/java:17;"}


def load(**env):
    return load_config({**BASE, **env})


def problems(**env):
    with pytest.raises(ConfigError) as caught:
        load_config({**BASE, **env})
    return caught.value.problems


def test_defaults_follow_the_documentation():
    config = load()
    assert config.caching_interval_hours == 1
    assert (config.memory_request, config.memory_limit) == ("10Mi", "20Mi")
    assert (config.cpu_request, config.cpu_limit) == (".05", ".2")
    assert config.daemonset_name == "kubernetes-image-puller"
    assert config.deployment_name == "kubernetes-image-puller"
    assert config.namespace == "k8s-image-puller"
    assert config.node_selector == {}
    assert config.affinity == {}
    assert config.tolerations == ()
    assert config.image_pull_secrets == ()
    assert config.daemonset_annotations == {}
    assert config.kip_image == DEFAULT_KIP_IMAGE
    assert config.ready_timeout_seconds == 300
    assert (config.log_format, config.log_level) == ("auto", "info")
    assert config.kubeconfig is None


def test_images_keep_order_and_ignore_whitespace_newlines_and_trailing_separator():
    config = load_config(
        {
            "IMAGES": "\n  zeta = quay.io/a/z:1 ;\n alpha=docker.io/library/b@sha256:"
            + "a" * 64
            + " ;\n\n mid=localhost:5000/c;\n"
        }
    )
    assert config.images == (
        CachedImage("zeta", "quay.io/a/z:1"),
        CachedImage("alpha", "docker.io/library/b@sha256:" + "a" * 64),
        CachedImage("mid", "localhost:5000/c"),
    )


@pytest.mark.parametrize("value", [None, "", "   ", ";;", "{}"])
def test_images_is_required_and_must_list_something(value):
    env = {} if value is None else {"IMAGES": value}
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    (problem,) = caught.value.problems
    assert problem.startswith("IMAGES")
    assert "name=image;name=image;" in problem


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("noequals", "expected `name=image"),
        ("=quay.io/x", "expected `name=image"),
        ("name=", "expected `name=image"),
        ("Upper=quay.io/x", "DNS-1123 label"),
        ("under_score=quay.io/x", "DNS-1123 label"),
        ("-dash=quay.io/x", "DNS-1123 label"),
        ("a" * 64 + "=quay.io/x", "DNS-1123 label"),
        ("copy-sleep=quay.io/x", "reserved for the init container"),
        ("x=Quay.io/UPPER/case", "image reference"),
        ("x=UPPER/x", "image reference"),
        ("x=quay.io/x:tag with space", "image reference"),
        ("x=quay.io/x@sha256:short", "sha256 digest is 64"),
        ("x=quay.io//x", "image reference"),
        ("x=:tag", "image reference"),
    ],
)
def test_bad_image_entries_are_reported_not_dropped(entry, fragment):
    found = problems(IMAGES=f"ok=quay.io/ok:1;{entry};")
    assert len(found) == 1
    assert f"IMAGES entry 2 {entry!r}" in found[0]
    assert fragment in found[0]


def test_duplicate_names_are_an_error():
    (problem,) = problems(IMAGES="a=quay.io/x;a=quay.io/y")
    assert "used twice" in problem and "'a'" in problem


@pytest.mark.parametrize(
    "image",
    [
        "busybox",
        "busybox:1.36",
        "docker.io/library/busybox:latest",
        "registry.example.com:5000/team/sub/image:v1.2.3-rc_1",
        "quay.io/a/b@sha256:" + "0123456789abcdef" * 4,
        "quay.io/a/b:tag@sha256:" + "0123456789abcdef" * 4,
        "Registry.Example.COM/lower/path",
        "localhost/x",
    ],
)
def test_valid_image_references(image):
    assert load(IMAGES=f"x={image}").images[0].image == image


@pytest.mark.parametrize(
    ("value", "hours"), [("1", 1.0), ("0.5", 0.5), (" 24 ", 24.0), ("0.001", 0.001)]
)
def test_caching_interval_accepts_decimal_hours(value, hours):
    assert load(CACHING_INTERVAL_HOURS=value).caching_interval_hours == hours
    assert load(CACHING_INTERVAL_HOURS=value).caching_interval_seconds == hours * 3600


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1h", "nan", "inf"])
def test_caching_interval_rejects_non_positive_or_non_numbers(value):
    (problem,) = problems(CACHING_INTERVAL_HOURS=value)
    assert problem.startswith(f"CACHING_INTERVAL_HOURS={value!r}")
    assert "positive number of hours" in problem


def test_quantities_parse_and_keep_their_spelling():
    config = load(
        CACHING_MEMORY_REQUEST="5Mi",
        CACHING_MEMORY_LIMIT="1Gi",
        CACHING_CPU_REQUEST="100m",
        CACHING_CPU_LIMIT="1",
    )
    assert (config.memory_request, config.memory_limit) == ("5Mi", "1Gi")
    assert (config.cpu_request, config.cpu_limit) == ("100m", "1")


@pytest.mark.parametrize(
    "variable",
    ["CACHING_MEMORY_REQUEST", "CACHING_MEMORY_LIMIT", "CACHING_CPU_REQUEST", "CACHING_CPU_LIMIT"],
)
@pytest.mark.parametrize("value", ["lots", "-1", "0", "10MB"])
def test_bad_quantities(variable, value):
    found = problems(**{variable: value})
    assert len(found) == 1
    assert found[0].startswith(f"{variable}={value!r}")
    assert "quantity" in found[0]


def test_request_above_limit_is_an_error():
    found = problems(
        CACHING_MEMORY_REQUEST="30Mi", CACHING_CPU_REQUEST="500m", CACHING_CPU_LIMIT=".2"
    )
    assert any(
        "CACHING_MEMORY_REQUEST='30Mi' is more than CACHING_MEMORY_LIMIT='20Mi'" in p for p in found
    )
    assert any("CACHING_CPU_REQUEST='500m' is more than CACHING_CPU_LIMIT='.2'" in p for p in found)


def test_names():
    config = load(DAEMONSET_NAME="cache", DEPLOYMENT_NAME="puller.v2", NAMESPACE="tools")
    assert (config.daemonset_name, config.deployment_name, config.namespace) == (
        "cache",
        "puller.v2",
        "tools",
    )


@pytest.mark.parametrize("variable", ["DAEMONSET_NAME", "DEPLOYMENT_NAME", "NAMESPACE"])
def test_bad_names(variable):
    (problem,) = problems(**{variable: "Not_A_Name"})
    assert problem.startswith(f"{variable}='Not_A_Name'")
    assert "DNS-1123" in problem


def test_json_settings():
    config = load(
        NODE_SELECTOR='{"kubernetes.io/os": "linux"}',
        AFFINITY='{"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}',
        TOLERATIONS='[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]',
        DAEMONSET_ANNOTATIONS='{"team": "ide"}',
    )
    assert config.node_selector == {"kubernetes.io/os": "linux"}
    assert "nodeAffinity" in config.affinity
    assert config.tolerations == ({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},)
    assert config.daemonset_annotations == {"team": "ide"}


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("NODE_SELECTOR", "{", "not valid JSON"),
        ("NODE_SELECTOR", '["a"]', "JSON object of node labels"),
        ("NODE_SELECTOR", '{"a": 1}', "JSON object of node labels"),
        ("DAEMONSET_ANNOTATIONS", '{"a": true}', "JSON object of strings"),
        ("AFFINITY", "[]", "shaped like a pod's affinity"),
        ("AFFINITY", '{"nodeAfinity": {}}', "nodeAfinity: unknown field"),
        ("TOLERATIONS", "{}", "JSON list of tolerations"),
        ("TOLERATIONS", '["x"]', "item 0: is not an object"),
        ("TOLERATIONS", '[{"kee": "x"}]', "unknown keys"),
        ("TOLERATIONS", '[{"key": "x", "operator": "In"}]', "Exists or Equal"),
        ("TOLERATIONS", '[{"key": "x", "effect": "Never"}]', "effect must be"),
        ("TOLERATIONS", '[{"key": "x", "tolerationSeconds": "5"}]', "whole number"),
    ],
)
def test_bad_json_settings(variable, value, fragment):
    (problem,) = problems(**{variable: value})
    assert problem.startswith(f"{variable}={value!r}")
    assert fragment in problem


def test_image_pull_secrets():
    assert load(IMAGE_PULL_SECRETS=" a ; b.c ;").image_pull_secrets == ("a", "b.c")
    (problem,) = problems(IMAGE_PULL_SECRETS="ok;Bad_Name")
    assert "IMAGE_PULL_SECRETS" in problem and "Bad_Name" in problem


def test_kip_image_must_be_a_reference():
    assert load(KIP_IMAGE="quay.io/me/puller:1").kip_image == "quay.io/me/puller:1"
    (problem,) = problems(KIP_IMAGE="not an image")
    assert problem.startswith("KIP_IMAGE='not an image'")


@pytest.mark.parametrize(
    ("value", "seconds"), [("90", 90), ("45s", 45), ("5m", 300), ("1h30m", 5400), ("1500ms", 1.5)]
)
def test_ready_timeout_durations(value, seconds):
    assert load(READY_TIMEOUT=value).ready_timeout_seconds == seconds


@pytest.mark.parametrize(
    "value", ["0", "-5", "5x", "m", "500ms", "25h", "1e309", "1_000", "١٠", "inf"]
)
def test_bad_ready_timeout(value):
    (problem,) = problems(READY_TIMEOUT=value)
    assert problem.startswith(f"READY_TIMEOUT={value!r}")


def test_log_settings():
    config = load(LOG_FORMAT="JSON", LOG_LEVEL="debug")
    assert (config.log_format, config.log_level) == ("json", "debug")
    assert "LOG_FORMAT" in problems(LOG_FORMAT="xml")[0]
    assert "LOG_LEVEL" in problems(LOG_LEVEL="loud")[0]


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        load_config(
            {
                "IMAGES": "Bad=x;ok=quay.io/x",
                "CACHING_INTERVAL_HOURS": "-2",
                "CACHING_MEMORY_LIMIT": "nope",
                "NODE_SELECTOR": "[]",
                "READY_TIMEOUT": "soon",
            }
        )
    variables = [p.split("=")[0].split(" ")[0] for p in caught.value.problems]
    assert variables == [
        "IMAGES",
        "CACHING_INTERVAL_HOURS",
        "CACHING_MEMORY_LIMIT",
        "NODE_SELECTOR",
        "READY_TIMEOUT",
    ]
    # One message, one line per problem: what an administrator sees in `oc logs`.
    assert str(caught.value).count("\n  - ") == 5


def test_empty_values_mean_the_default():
    config = load(CACHING_INTERVAL_HOURS="", NODE_SELECTOR="  ", KIP_IMAGE="")
    assert config.caching_interval_hours == 1
    assert config.node_selector == {}
    assert config.kip_image == DEFAULT_KIP_IMAGE


def test_summary_lists_the_effective_settings():
    summary = load(NODE_SELECTOR='{"a": "b"}').summary()
    assert summary["images"] == ["java=quay.io/eclipse/java:17"]
    assert summary["node_selector"] == {"a": "b"}
    assert summary["ready_timeout_seconds"] == 300


@pytest.mark.parametrize(
    "value",
    [
        "1K",
        "20 Mi",
        "1e3Mi",
        "1_000",
        "\u0661\u0660Mi",
        "Infinity",
        "inf",
        "1e999999999",
        "NaN",
        "10Mib",
    ],
)
@pytest.mark.parametrize("variable", ["CACHING_MEMORY_LIMIT", "CACHING_CPU_LIMIT"])
def test_quantities_follow_kubernetes_syntax_exactly(variable, value):
    (problem,) = problems(**{variable: value})
    assert problem.startswith(f"{variable}={value!r}")


@pytest.mark.parametrize("value", ["1e3", "1.5Ki", "20971520", "2E6", "1Gi"])
def test_memory_quantities_kubernetes_accepts(value):
    assert load(CACHING_MEMORY_REQUEST="1", CACHING_MEMORY_LIMIT=value).memory_limit == value


@pytest.mark.parametrize(
    "value",
    ["20Mi", "500M", ".2", "200m", "1", "+5k", "-1", "12.", "1.5E-2", "1e3", "4E", "7Ei", "3u"]
    + ["1n", "0.5Ki", "8Pi", "1T", "2G", "3P", "9223372036854775807m", "-1.e3", "0"],
)
def test_quantity_values_are_the_kubernetes_clients(value):
    # Our own parser (the client's would load the whole client into render and check) must
    # read every quantity as the client's parse_quantity does.
    from kubernetes.utils import parse_quantity

    assert quantity_value(value) == parse_quantity(value)


def test_too_large_quantities_say_so():
    (problem,) = problems(CACHING_MEMORY_REQUEST="1", CACHING_MEMORY_LIMIT="1Ei")
    assert "too large" in problem


def test_memory_must_be_whole_bytes_and_cpu_at_least_one_millicore():
    (memory,) = problems(CACHING_MEMORY_REQUEST="0.1m")
    assert "whole number of bytes" in memory
    (cpu,) = problems(CACHING_CPU_REQUEST="0.0001")
    assert "at least 1m" in cpu


@pytest.mark.parametrize("value", ["0.0001", "1e-7", "8761", "1e308", "1_0", "\u0661"])
def test_caching_interval_bounds_and_plain_digits(value):
    (problem,) = problems(CACHING_INTERVAL_HOURS=value)
    assert "from 0.001 to 8760" in problem


def test_check_survives_the_largest_accepted_values(capsys):
    from imagepuller.cli import main

    env = {
        **BASE,
        "CACHING_INTERVAL_HOURS": "8760",
        "READY_TIMEOUT": "24h",
        "CACHING_MEMORY_LIMIT": "8Pi",
        "CACHING_MEMORY_REQUEST": "8Pi",
    }
    assert main(["check", "--nodes", "5000"], env) == 0
    assert "memory reserved in total" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("NODE_SELECTOR", '{"bad key!": "x"}', "invalid keys ['bad key!']"),
        ("NODE_SELECTOR", '{"/name": "x"}', "invalid keys"),
        ("NODE_SELECTOR", '{"pool": "has space"}', "invalid label values"),
        ("NODE_SELECTOR", '{"pool": "' + "v" * 64 + '"}', "invalid label values"),
        ("NODE_SELECTOR", '{"a": "1", "a": "2"}', "the key 'a' is given twice"),
        ("DAEMONSET_ANNOTATIONS", '{"bad key!": "x"}', "invalid keys"),
        ("DAEMONSET_ANNOTATIONS", '{"a": "1", "a": "2"}', "given twice"),
        ("AFFINITY", "[" * 100000, "nested too deeply"),
        (
            "TOLERATIONS",
            '[{"key": "k", "operator": "Exists", "value": "v"}]',
            "Exists takes no value",
        ),
        ("TOLERATIONS", '[{"operator": "Equal", "value": "v"}]', "needs operator Exists"),
        (
            "TOLERATIONS",
            '[{"key": "k", "operator": "Exists", "tolerationSeconds": 5}]',
            "needs effect NoExecute",
        ),
        ("TOLERATIONS", '[{"key": "bad key!", "operator": "Exists"}]', "not a valid label key"),
        ("TOLERATIONS", '[{"key": 5, "operator": "Exists"}]', "not a valid label key"),
        ("IMAGE_PULL_SECRETS", "a;a", "given twice"),
    ],
)
def test_values_the_api_would_reject_are_caught_here(variable, value, fragment):
    (problem,) = problems(**{variable: value})
    assert problem.startswith(f"{variable}=")
    assert fragment in problem


def test_every_bad_toleration_and_secret_is_reported():
    (tolerations,) = problems(TOLERATIONS='[{"key": "a", "operator": "In"}, "x", {"kee": 1}]')
    assert "item 0: operator" in tolerations
    assert "item 1: is not an object" in tolerations
    assert "item 2: unknown keys" in tolerations
    (secrets,) = problems(IMAGE_PULL_SECRETS="Bad_One;ok;Also Bad")
    assert "'Bad_One'" in secrets and "'Also Bad'" in secrets


def test_valid_labels_annotations_and_tolerations():
    config = load(
        NODE_SELECTOR='{"node-role.kubernetes.io/worker": "", '
        '"topology.kubernetes.io/zone": "eu-1a"}',
        DAEMONSET_ANNOTATIONS='{"example.com/note": "any text at all, with spaces"}',
        TOLERATIONS='[{"operator": "Exists"}, {"key": "k", "operator": "Equal", "value": "v", '
        '"effect": "NoExecute", "tolerationSeconds": 30}]',
    )
    assert config.node_selector["topology.kubernetes.io/zone"] == "eu-1a"
    assert len(config.tolerations) == 2


@pytest.mark.parametrize(
    "image",
    [
        "busybox:tag\u00e9",
        "busybox:\u0661",
        "x@sha256:" + "A" * 64,
        "x@sha256:" + "a" * 63,
        "x@sha512:" + "a" * 64,
    ],
)
def test_image_tags_and_digests_are_strict(image):
    (problem,) = problems(IMAGES=f"x={image}")
    assert "IMAGES entry 1" in problem


# --- hardening: every bad value is a listed problem, never a crash or a late API error -------


def _nested(depth, innermost="0"):
    return "[" * depth + innermost + "]" * depth


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("operator", []),
        ("operator", {}),
        ("operator", 5),
        ("effect", {}),
        ("effect", []),
        ("effect", True),
        ("key", []),
        ("value", {}),
        ("value", 1),
        ("tolerationSeconds", []),
        ("tolerationSeconds", {}),
        ("tolerationSeconds", 1.5),
        ("tolerationSeconds", True),
        ("tolerationSeconds", "5"),
    ],
)
def test_toleration_fields_of_the_wrong_json_type_are_problems_not_crashes(field, value):
    toleration = {"key": "k", "operator": "Exists", "effect": "NoExecute", field: value}
    raw = json.dumps([toleration])
    (problem,) = problems(TOLERATIONS=raw)
    assert problem.startswith(f"TOLERATIONS={raw!r}")
    assert f"item 0: {field} " in problem


def test_every_wrongly_typed_toleration_field_is_listed_at_once():
    raw = '[{"key": [], "operator": [], "value": {}, "effect": {}, "tolerationSeconds": []}]'
    (problem,) = problems(TOLERATIONS=raw)
    for field in ("key", "operator", "value", "effect", "tolerationSeconds"):
        assert f"item 0: {field} " in problem


@pytest.mark.parametrize("seconds", [2**63, -(2**63) - 1, 10**30])
def test_toleration_seconds_beyond_int64_are_refused(seconds):
    raw = json.dumps([{"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}])
    (problem,) = problems(TOLERATIONS=raw)
    assert "tolerationSeconds" in problem and "64-bit" in problem


@pytest.mark.parametrize("seconds", [2**63 - 1, -(2**63), 0])
def test_toleration_seconds_within_int64_are_accepted(seconds):
    raw = json.dumps([{"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}])
    assert load(TOLERATIONS=raw).tolerations[0]["tolerationSeconds"] == seconds


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AFFINITY", '{"nodeAffinity": ' + _nested(500) + "}"),
        ("AFFINITY", '{"nodeAffinity": ' + _nested(40) + "}"),
        ("NODE_SELECTOR", '{"a": ' + _nested(500) + "}"),
        ("DAEMONSET_ANNOTATIONS", '{"a": ' + _nested(500) + "}"),
        ("TOLERATIONS", "[" + _nested(500) + "]"),
        ("TOLERATIONS", '[{"kee": ' + _nested(500) + "}]"),
    ],
)
def test_json_nested_deeper_than_the_limit_is_a_problem_naming_the_setting(variable, value):
    (problem,) = problems(**{variable: value})
    assert problem.startswith(f"{variable}=")
    assert "nested too deeply" in problem and "32" in problem


def test_json_nesting_up_to_the_limit_is_not_refused_for_depth():
    # 32 levels in all: the affinity object and 31 lists; refused for its shape, not its depth.
    found = problems(AFFINITY='{"nodeAffinity": ' + _nested(31) + "}")
    assert all("nested too deeply" not in p for p in found)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("NODE_SELECTOR", '{"pool\\n": "a"}'),
        ("NODE_SELECTOR", '{"pool": "a\\n"}'),
        ("NODE_SELECTOR", '{"example.com\\n/pool": "a"}'),
        ("DAEMONSET_ANNOTATIONS", '{"note\\n": "a"}'),
        ("DAEMONSET_ANNOTATIONS", '{"example.com\\n/note": "a"}'),
        ("TOLERATIONS", '[{"key": "k\\n", "operator": "Exists"}]'),
        ("TOLERATIONS", '[{"key": "k", "operator": "Equal", "value": "v\\n"}]'),
    ],
)
def test_a_trailing_newline_does_not_slip_through_a_pattern(variable, value):
    (problem,) = problems(**{variable: value})
    assert problem.startswith(f"{variable}=")


def test_parsers_match_whole_values_not_up_to_a_final_newline():
    from imagepuller import imageref, jsonparsers, valueparsers

    for parse, good in [
        (valueparsers.dns_label, "cache"),
        (valueparsers.dns_subdomain, "puller.v2"),
        (imageref.check_image_reference, "quay.io/a/b:1"),
        (valueparsers.memory_quantity, "20Mi"),
        (valueparsers.cpu_quantity, "200m"),
        (valueparsers.parse_hours, "1"),
    ]:
        assert parse(good)
        with pytest.raises(ValueError):
            parse(good + "\n")
    assert jsonparsers.is_qualified_name("a") and not jsonparsers.is_qualified_name("a\n")
    assert jsonparsers.is_label_value("a") and not jsonparsers.is_label_value("a\n")


@pytest.mark.parametrize(
    ("image", "fragment"),
    [
        ("x@md5:" + "a" * 32, "digest algorithm 'md5'"),
        ("x@blake3:" + "a" * 64, "digest algorithm 'blake3'"),
        ("x@sha384:zz", "sha384 digest is 96"),
        ("x@sha384:" + "a" * 64, "sha384 digest is 96"),
        ("x@sha384:" + "A" * 96, "sha384 digest is 96"),
        ("x@sha512:" + "a" * 96, "sha512 digest is 128"),
        ("a" * 64, "64 hexadecimal"),
        ("0123456789abcdef" * 4, "64 hexadecimal"),
        ("a" * 255, "at most 255"),
        ("a" * 238, "at most 255"),
        ("team/" + "a" * 241, "at most 255"),
        ("quay.io/" + "a" * 248, "at most 255"),
    ],
)
def test_image_references_the_kubelet_refuses(image, fragment):
    (problem,) = problems(IMAGES=f"x={image}")
    assert problem.startswith("IMAGES entry 1")
    assert fragment in problem


@pytest.mark.parametrize(
    "image",
    [
        "x@sha384:" + "0123456789abcdef" * 6,
        "x@sha512:" + "0123456789abcdef" * 8,
        "quay.io/a/b:1@sha384:" + "a" * 96,
        # Only a whole reference of 64 hex digits is taken for an image ID; with a tag it is a name.
        "a" * 64 + ":v1",
        "a" * 63,
        # The longest names: 255 characters once normalised to docker.io/library/<name>.
        "a" * 237,
        "team/" + "a" * 240,
        "quay.io/" + "a" * 247,
        "index.docker.io/team/" + "a" * 240,
    ],
)
def test_image_references_the_kubelet_accepts(image):
    assert load(IMAGES=f"x={image}").images[0].image == image


def test_annotations_may_total_256_kib_and_no_more():
    key = "example.com/blob"
    fits = "v" * (262144 - len(key))
    assert load(DAEMONSET_ANNOTATIONS=json.dumps({key: fits})).daemonset_annotations[key] == fits
    (problem,) = problems(DAEMONSET_ANNOTATIONS=json.dumps({key: fits + "v"}))
    assert problem.startswith("DAEMONSET_ANNOTATIONS=")
    assert "262145 bytes" in problem and "262144" in problem
    # The size is counted as the API counts it: bytes of UTF-8, not characters.
    (problem,) = problems(DAEMONSET_ANNOTATIONS=json.dumps({"a": "\u00e9" * 131072}))
    assert "262145 bytes" in problem
    # A long value is shortened in the message, which stays readable.
    assert len(problem) < 1000 and "characters)" in problem


def test_label_values_longer_than_63_characters_say_so():
    (problem,) = problems(NODE_SELECTOR=json.dumps({"pool": "v" * 64}))
    assert "at most 63" in problem


@pytest.mark.parametrize(
    "toleration",
    [
        {"key": "k", "operator": "", "value": "v"},
        {"key": "k", "operator": "", "value": "v", "effect": "NoSchedule"},
        {"key": "k", "operator": None, "value": "v"},
    ],
)
def test_an_empty_toleration_operator_means_equal(toleration):
    assert load(TOLERATIONS=json.dumps([toleration])).tolerations == (toleration,)


@pytest.mark.parametrize(
    "toleration", [{"key": "", "operator": ""}, {"operator": "", "value": "v"}, {"operator": ""}]
)
def test_an_empty_operator_with_an_empty_key_is_refused_like_equal(toleration):
    (problem,) = problems(TOLERATIONS=json.dumps([toleration]))
    assert "needs operator Exists" in problem


def test_annotation_keys_are_case_insensitive_like_the_api_but_label_keys_are_not():
    annotations = {"Example.COM/Note": "x", "UPPER.example.com/a": "y"}
    config = load(DAEMONSET_ANNOTATIONS=json.dumps(annotations))
    assert config.daemonset_annotations == annotations
    (problem,) = problems(NODE_SELECTOR='{"Example.COM/pool": "a"}')
    assert "invalid keys" in problem
    (problem,) = problems(TOLERATIONS='[{"key": "Example.COM/k", "operator": "Exists"}]')
    assert "not a valid label key" in problem
    # Still a qualified name once lower-cased: no spaces, no empty prefix.
    assert problems(DAEMONSET_ANNOTATIONS='{"Bad Key/x": "y"}')


FULL_AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}
                    ],
                    "matchFields": [
                        {"key": "metadata.name", "operator": "NotIn", "values": ["node-1"]}
                    ],
                }
            ]
        },
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 10,
                "preference": {
                    "matchExpressions": [{"key": "pool", "operator": "Exists"}],
                },
            }
        ],
    },
    "podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {
                "labelSelector": {
                    "matchLabels": {"app": "ide"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}],
                },
                "namespaceSelector": {"matchLabels": {"team": "x"}},
                "namespaces": ["ns1"],
                "topologyKey": "kubernetes.io/hostname",
                "matchLabelKeys": ["pod-template-hash"],
                "mismatchLabelKeys": ["tenant"],
            }
        ],
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "podAffinityTerm": {"topologyKey": "zone"}}
        ],
    },
    "podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone"}],
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"topologyKey": "zone", "namespaces": []}}
        ],
    },
}


def test_every_affinity_field_of_the_api_is_accepted():
    assert load(AFFINITY=json.dumps(FULL_AFFINITY)).affinity == FULL_AFFINITY


def test_null_affinity_fields_mean_unset_as_in_the_api():
    raw = json.dumps(
        {
            "nodeAffinity": None,
            "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": None},
        }
    )
    assert load(AFFINITY=raw).affinity == json.loads(raw)


NODE_REQUIRED = "nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"


@pytest.mark.parametrize(
    ("affinity", "expected"),
    [
        (
            {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecutio": {}}},
            "nodeAffinity.requiredDuringSchedulingIgnoredDuringExecutio: unknown field "
            "(expected one of preferredDuringSchedulingIgnoredDuringExecution, "
            "requiredDuringSchedulingIgnoredDuringExecution)",
        ),
        (
            {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": "x"}
                }
            },
            f"{NODE_REQUIRED}.nodeSelectorTerms: expected a list",
        ),
        ({"nodeAfinity": {}}, "nodeAfinity: unknown field (expected one of nodeAffinity, "),
        ({"nodeAffinity": []}, "nodeAffinity: expected an object"),
        (
            {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": 1, "operator": "In"}]}]
                    }
                }
            },
            f"{NODE_REQUIRED}.nodeSelectorTerms[0].matchExpressions[0].key: expected a string",
        ),
        (
            {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchFields": [{"key": "k", "operator": "In", "values": "a"}]}
                        ]
                    }
                }
            },
            f"{NODE_REQUIRED}.nodeSelectorTerms[0].matchFields[0].values: expected a list",
        ),
        (
            {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchFields": [{"key": "k", "operator": "In", "values": ["a", 2]}]}
                        ]
                    }
                }
            },
            f"{NODE_REQUIRED}.nodeSelectorTerms[0].matchFields[0].values[1]: expected a string",
        ),
        (
            {
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": "1", "preference": {}}
                    ]
                }
            },
            "nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: "
            "expected an integer",
        ),
        (
            {
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 1.5, "preference": {}}
                    ]
                }
            },
            "weight: expected an integer",
        ),
        (
            {
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": True, "preference": {}}
                    ]
                }
            },
            "weight: expected an integer",
        ),
        (
            {
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 2**31, "preference": {}}
                    ]
                }
            },
            "weight: expected an integer",
        ),
        (
            {
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 1, "preferenc": {}}
                    ]
                }
            },
            "[0].preferenc: unknown field (expected one of preference, weight)",
        ),
        (
            {
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"topologyKey": "z"}
                }
            },
            "podAffinity.requiredDuringSchedulingIgnoredDuringExecution: expected a list",
        ),
        (
            {
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": ["z"]}]
                }
            },
            "podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: "
            "expected a string",
        ),
        (
            {
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {"topologyKey": "z", "labelSelector": {"matchLabels": {"a": 1}}}
                    ]
                }
            },
            "labelSelector.matchLabels.a: expected a string",
        ),
        (
            {
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {"topologyKey": "z", "namespaceSelector": {"matchLabel": {}}}
                    ]
                }
            },
            "namespaceSelector.matchLabel: unknown field "
            "(expected one of matchExpressions, matchLabels)",
        ),
        (
            {
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {"topologyKey": "z", "namespaces": "ns"}
                    ]
                }
            },
            "[0].namespaces: expected a list",
        ),
        (
            {
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {"topologyKey": "z", "matchLabelKeys": [1]}
                    ]
                }
            },
            "[0].matchLabelKeys[0]: expected a string",
        ),
        (
            {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 1,
                            "podAffinityTerm": {"topologyKey": "z", "mismatchLabelKeys": {}},
                        }
                    ]
                }
            },
            "podAffinityTerm.mismatchLabelKeys: expected a list",
        ),
        (
            {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [None]}},
            "podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]: expected an object",
        ),
    ],
)
def test_affinity_fields_and_json_types_are_checked_without_a_cluster(affinity, expected):
    raw = json.dumps(affinity)
    found = problems(AFFINITY=raw)
    assert all(p.startswith(f"AFFINITY={raw!r}: ") for p in found)
    assert any(expected in p for p in found), found


def test_every_affinity_problem_is_listed_once_each():
    raw = json.dumps(
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecutio": {},
                "preferredDuringSchedulingIgnoredDuringExecution": "x",
            },
            "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": 1}]},
            "extra": 1,
        }
    )
    found = problems(AFFINITY=raw, NODE_SELECTOR="[]")
    # The long value is shortened in each line: "AFFINITY='...'... (228 characters): <problem>".
    affinity = [p.partition(" characters): ")[2] for p in found if p.startswith("AFFINITY=")]
    assert sorted(affinity) == sorted(
        [
            "extra: unknown field (expected one of nodeAffinity, podAffinity, podAntiAffinity)",
            "nodeAffinity.requiredDuringSchedulingIgnoredDuringExecutio: unknown field "
            "(expected one of preferredDuringSchedulingIgnoredDuringExecution, "
            "requiredDuringSchedulingIgnoredDuringExecution)",
            "nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution: expected a list",
            "podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: "
            "expected a string",
        ]
    )
    assert found[0].startswith("NODE_SELECTOR=")


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        (
            "TOLERATIONS",
            '[{"key": "k", "operator": "Exists", "tolerationSeconds": NaN}]',
            "not valid JSON",
        ),
        ("AFFINITY", '{"nodeAffinity": Infinity}', "not valid JSON"),
        ("NODE_SELECTOR", '{"a": -Infinity}', "not valid JSON"),
        ("TOLERATIONS", '[{"tolerationSeconds": ' + "1" * 5000 + "}]", "number too long"),
        ("DAEMONSET_ANNOTATIONS", '{"a": "\\ud800"}', "not valid Unicode"),
        ("DAEMONSET_ANNOTATIONS", '{"\\udfff": "a"}', "not valid Unicode"),
        ("AFFINITY", '{"nodeAffinity": {"\\ud800": 1}}', "not valid Unicode"),
    ],
)
def test_json_that_is_not_portable_json_is_refused(variable, value, fragment):
    (problem,) = problems(**{variable: value})
    assert problem.startswith(f"{variable}=")
    assert fragment in problem


def test_long_values_are_shortened_in_problems():
    value = "x" * 100000
    (problem,) = problems(NAMESPACE=value)
    assert problem.startswith("NAMESPACE='xxx")
    assert "(100000 characters)" in problem and len(problem) < 1000


# --- Refresh and live-reload settings (issue 7) ---------------------------------------------


def test_refresh_defaults():
    config = load()
    assert config.refresh_strategy == "rolling"
    assert config.refresh_max_surge == "10%"
    assert config.configmap_name is None


@pytest.mark.parametrize(
    ("value", "strategy"),
    [("rolling", "rolling"), ("Recreate", "recreate"), (" ROLLING ", "rolling")],
)
def test_refresh_strategy_is_case_insensitive(value, strategy):
    assert load(REFRESH_STRATEGY=value).refresh_strategy == strategy


@pytest.mark.parametrize("value", ["rollout", "delete", "RollingUpdate", "OnDelete"])
def test_bad_refresh_strategy(value):
    (problem,) = problems(REFRESH_STRATEGY=value)
    assert problem.startswith(f"REFRESH_STRATEGY={value!r}")
    assert "rolling" in problem and "recreate" in problem


@pytest.mark.parametrize(
    ("value", "surge"),
    [
        ("1", 1),
        ("5", 5),
        (" 250 ", 250),
        ("2147483647", 2147483647),
        ("1%", "1%"),
        ("10%", "10%"),
        ("100%", "100%"),
        ("007", 7),  # leading zeros are read as the API reads them, and dropped
        ("05%", "5%"),
    ],
)
def test_refresh_max_surge_is_a_count_or_a_percentage(value, surge):
    got = load(REFRESH_MAX_SURGE=value).refresh_max_surge
    assert got == surge
    assert type(got) is type(surge)  # an int for a count: that is how it goes into the API


@pytest.mark.parametrize(
    "value",
    [
        "0",
        "0%",
        "101%",
        "1.5",
        "-1",
        "10 %",
        "ten",
        "%",
        "5%%",
        "+5",
        "1e2",
        "\u0661",
        "2147483648",
        "000%",
    ],
)
def test_bad_refresh_max_surge(value):
    (problem,) = problems(REFRESH_MAX_SURGE=value)
    assert problem.startswith(f"REFRESH_MAX_SURGE={value!r}")
    assert "whole number" in problem and "percentage" in problem


def test_configmap_name():
    assert load(CONFIGMAP_NAME="puller-settings").configmap_name == "puller-settings"
    assert load(CONFIGMAP_NAME="a.b-c").configmap_name == "a.b-c"
    assert load(CONFIGMAP_NAME=" ").configmap_name is None


@pytest.mark.parametrize("value", ["Not_A_Name", "-x", "x" * 254, "a..b"])
def test_bad_configmap_name(value):
    (problem,) = problems(CONFIGMAP_NAME=value)
    assert problem.startswith(f"CONFIGMAP_NAME={value[:20]!r}"[:-1])
    assert "DNS-1123" in problem


def test_new_settings_are_reported_with_the_others():
    with pytest.raises(ConfigError) as caught:
        load_config(
            {
                "IMAGES": "ok=quay.io/x",
                "REFRESH_STRATEGY": "sometimes",
                "REFRESH_MAX_SURGE": "0",
                "CONFIGMAP_NAME": "Bad",
            }
        )
    variables = sorted(p.split("=")[0] for p in caught.value.problems)
    assert variables == ["CONFIGMAP_NAME", "REFRESH_MAX_SURGE", "REFRESH_STRATEGY"]


def test_summary_has_the_refresh_settings():
    summary = load(
        REFRESH_STRATEGY="recreate", REFRESH_MAX_SURGE="3", CONFIGMAP_NAME="cm"
    ).summary()
    assert summary["refresh_strategy"] == "recreate"
    assert summary["refresh_max_surge"] == 3
    assert summary["configmap_name"] == "cm"


def test_env_only_variables_are_the_process_settings():
    from imagepuller.settings import ENV_ONLY_VARIABLES

    process = {"DEPLOYMENT_NAME", "POD_NAMESPACE", "POD_NAME", "CONFIGMAP_NAME", "KUBECONFIG"}
    # The endpoints are bound once, at start: a live edit cannot move them.
    process |= {"METRICS_PORT", "METRICS_HOST", "HEALTHZ_STUCK_AFTER"}
    # The hosts IMAGES_FROM may name: a ConfigMap edit must not widen them.
    process |= {"IMAGES_FROM_HOSTS"}
    assert isinstance(ENV_ONLY_VARIABLES, frozenset)
    assert set(ENV_ONLY_VARIABLES) == process


@pytest.mark.parametrize(
    "key", ["imagepuller.io/refreshed-at", "imagepuller.io/spec-hash", "ImagePuller.io/x"]
)
def test_the_pullers_own_annotation_prefix_is_reserved(key):
    (problem,) = problems(DAEMONSET_ANNOTATIONS=json.dumps({"ok": "1", key: "x"}))
    assert problem.startswith("DAEMONSET_ANNOTATIONS=")
    assert "reserved" in problem and key in problem


def test_other_prefixes_that_contain_imagepuller_are_fine():
    value = {"example.imagepuller.io/a": "1", "imagepuller.io.example.com/b": "2"}
    assert load(DAEMONSET_ANNOTATIONS=json.dumps(value)).daemonset_annotations == value


def test_settings_is_every_variable_load_config_reads():
    from imagepuller.settings import ENV_ONLY_VARIABLES, SETTINGS

    env = RecordingEnv(BASE)
    load_config(env)
    assert isinstance(SETTINGS, frozenset)
    assert set(SETTINGS) == env.asked
    assert {"REFRESH_STRATEGY", "REFRESH_MAX_SURGE", "CONFIGMAP_NAME"} <= SETTINGS
    # Everything but POD_NAME (read by nobody here, set for the process) is a setting.
    not_read = ENV_ONLY_VARIABLES - SETTINGS
    assert not_read == {"POD_NAME"}


def test_the_byte_default_is_its_quantity():
    from imagepuller.settings import (
        DEFAULT_IMAGES_FROM_MAX_BYTES,
        DEFAULT_IMAGES_FROM_MAX_BYTES_VALUE,
    )

    assert quantity_value(DEFAULT_IMAGES_FROM_MAX_BYTES) == DEFAULT_IMAGES_FROM_MAX_BYTES_VALUE
