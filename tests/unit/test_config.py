"""Configuration: every variable, its default, and every kind of error."""

import pytest

from imagepuller.config import DEFAULT_KIP_IMAGE, CachedImage, ConfigError, load_config

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
        ("AFFINITY", '{"nodeAfinity": {}}', "unknown: nodeAfinity"),
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
        ("NODE_SELECTOR", '{"a": "1", "a": "2"}', "the key a is given twice"),
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
