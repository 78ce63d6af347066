"""Property tests: whatever the environment holds, load_config returns a Config or lists problems.

Generated inputs (arbitrary text, recursive JSON with lists and objects in odd places, huge
integers, unicode, unpaired surrogates, trailing newlines) find the crashes hand-picked ones miss.
"""

import copy
import json

import certifi
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from imagepuller.config import Config, ConfigError, load_config
from imagepuller.settings import SETTINGS

# Bounded so that the file runs in seconds; no example database in the repository.
BOUNDED = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Every setting load_config validates (KUBECONFIG and POD_NAMESPACE are taken as they are).
VARIABLES = tuple(sorted(SETTINGS - {"KUBECONFIG", "POD_NAMESPACE"}))
JSON_VARIABLES = ("NODE_SELECTOR", "AFFINITY", "TOLERATIONS", "DAEMONSET_ANNOTATIONS")

# Values that work, so that generated environments also get past validation now and then.
GOOD = {
    "REFRESH_STRATEGY": ["rolling", "recreate", "Rolling"],
    "REFRESH_MAX_SURGE": ["10%", "1", "100%", "25"],
    "CONFIGMAP_NAME": ["kubernetes-image-puller", "puller.v2"],
    "IMAGES": ["java=quay.io/eclipse/java:17;", "a=busybox;b=localhost:5000/x@sha256:" + "a" * 64],
    "CACHING_INTERVAL_HOURS": ["1", "0.5", "8760"],
    "CACHING_MEMORY_REQUEST": ["10Mi", "1e3", "1"],
    "CACHING_MEMORY_LIMIT": ["20Mi", "1Gi", "8Pi"],
    "CACHING_CPU_REQUEST": [".05", "1m"],
    "CACHING_CPU_LIMIT": [".2", "2"],
    "DAEMONSET_NAME": ["cache"],
    "DEPLOYMENT_NAME": ["puller.v2"],
    "NAMESPACE": ["tools"],
    "NODE_SELECTOR": ['{"kubernetes.io/os": "linux"}', "{}"],
    "AFFINITY": ['{"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": null}}'],
    "TOLERATIONS": ['[{"operator": "Exists"}]', "[]"],
    "IMAGE_PULL_SECRETS": ["a;b.c;"],
    "DAEMONSET_ANNOTATIONS": ['{"Example.com/note": "any text"}'],
    "KIP_IMAGE": ["quay.io/me/puller:1"],
    "READY_TIMEOUT": ["5m", "1h30m", "90"],
    "LOG_FORMAT": ["json", "CONSOLE"],
    "LOG_LEVEL": ["debug"],
    "IMAGES_FROM": ["https://devspaces.example.com/plugin-registry/v3/external_images.txt"],
    "IMAGES_FROM_CA_BUNDLE": [certifi.where()],
    "IMAGES_FROM_TIMEOUT": ["10s", "1m"],
    "IMAGES_FROM_MAX_IMAGES": ["100", "1"],
    "IMAGES_FROM_MAX_BYTES": ["1Mi", "500Ki"],
    "IMAGES_FROM_HOSTS": ["devspaces.example.com", "a.example,b.example:8443 [::1]:9000"],
    "METRICS_PORT": ["8080", "0"],
    "METRICS_HOST": ["127.0.0.1", "::"],
    "HEALTHZ_STUCK_AFTER": ["3m", "90s"],
}

# Field names of tolerations and of a pod's affinity, so generated objects reach deep paths.
FIELD_NAMES = (
    "key",
    "operator",
    "value",
    "effect",
    "tolerationSeconds",
    "nodeAffinity",
    "podAffinity",
    "podAntiAffinity",
    "requiredDuringSchedulingIgnoredDuringExecution",
    "preferredDuringSchedulingIgnoredDuringExecution",
    "nodeSelectorTerms",
    "matchExpressions",
    "matchFields",
    "values",
    "weight",
    "preference",
    "podAffinityTerm",
    "labelSelector",
    "namespaceSelector",
    "namespaces",
    "topologyKey",
    "matchLabelKeys",
    "mismatchLabelKeys",
    "matchLabels",
    "kubernetes.io/os",
)
WORDS = ("Exists", "Equal", "", "In", "NoSchedule", "NoExecute", "linux", "k", "v", "a" * 64)

# Any code point, unpaired surrogates included (os.environ holds them for undecodable bytes).
any_text = st.text(st.characters(exclude_categories=()), max_size=20)
near_miss_text = st.text(st.sampled_from(list('aZ09-_./:@;= \n\t{}[]"\\é')), max_size=20)
text = st.one_of(
    any_text,
    near_miss_text,
    st.sampled_from(WORDS),
    st.sampled_from(FIELD_NAMES),
    # A valid-looking value with a trailing newline or other whitespace.
    st.tuples(st.sampled_from(WORDS + FIELD_NAMES), st.sampled_from(["\n", " \n", "\r\n"])).map(
        "".join
    ),
)
huge_integers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**4000]),
)
json_scalars = st.one_of(st.none(), st.booleans(), huge_integers, st.floats(allow_nan=False), text)
json_keys = st.one_of(st.sampled_from(FIELD_NAMES), text)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(json_keys, children, max_size=5),
    ),
    max_leaves=10,
)
# Shaped like the settings, with any JSON value in any field.
json_objects = st.dictionaries(json_keys, json_values, max_size=6)
json_shaped = st.one_of(
    json_values,
    json_objects,
    st.lists(json_objects, max_size=4),
    st.dictionaries(json_keys, st.dictionaries(json_keys, json_values, max_size=4), max_size=4),
    st.dictionaries(text, text, max_size=6),
)


@st.composite
def json_text(draw, values=json_shaped):
    """A JSON document as an administrator might write it, now and then with a final newline."""
    value = draw(values)
    try:
        encoded = json.dumps(value, ensure_ascii=draw(st.booleans()))
    except ValueError:  # an integer with more digits than Python writes: write it by hand
        encoded = "1" * 5000
    return encoded + draw(st.sampled_from(["", "\n", " ", "\n\n"]))


deep_json = st.integers(min_value=20, max_value=2000).map(
    lambda depth: '{"nodeAffinity": ' + "[" * depth + "]" * depth + "}"
)
not_quite_json = st.sampled_from(
    ["NaN", "[Infinity]", '{"a": -Infinity}', "[1e999]", '{"a": "\\ud800"}', "[" * 5000, "{", ""]
)

# Values shaped as the API wants them, so that many load, with any text where text may go.
printable = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
strings = st.lists(printable, max_size=2)
requirements = st.lists(
    st.fixed_dictionaries(
        {"key": printable, "operator": st.sampled_from(["In", "NotIn", "Exists"])},
        optional={"values": strings},
    ),
    max_size=2,
)
node_selector_term = st.fixed_dictionaries(
    {}, optional={"matchExpressions": requirements, "matchFields": requirements}
)
label_selector = st.fixed_dictionaries(
    {},
    optional={
        "matchLabels": st.dictionaries(printable, printable, max_size=2),
        "matchExpressions": requirements,
    },
)
pod_affinity_term = st.fixed_dictionaries(
    {"topologyKey": printable},
    optional={
        "labelSelector": label_selector,
        "namespaceSelector": label_selector,
        "namespaces": strings,
        "matchLabelKeys": strings,
        "mismatchLabelKeys": strings,
    },
)
weights = st.integers(min_value=-(2**31), max_value=2**31 - 1)
pod_affinity = st.fixed_dictionaries(
    {},
    optional={
        "requiredDuringSchedulingIgnoredDuringExecution": st.lists(pod_affinity_term, max_size=2),
        "preferredDuringSchedulingIgnoredDuringExecution": st.lists(
            st.fixed_dictionaries({"weight": weights, "podAffinityTerm": pod_affinity_term}),
            max_size=2,
        ),
    },
)
affinities = st.fixed_dictionaries(
    {},
    optional={
        "nodeAffinity": st.fixed_dictionaries(
            {},
            optional={
                "requiredDuringSchedulingIgnoredDuringExecution": st.fixed_dictionaries(
                    {"nodeSelectorTerms": st.lists(node_selector_term, max_size=2)}
                ),
                "preferredDuringSchedulingIgnoredDuringExecution": st.lists(
                    st.fixed_dictionaries({"weight": weights, "preference": node_selector_term}),
                    max_size=2,
                ),
            },
        ),
        "podAffinity": pod_affinity,
        "podAntiAffinity": pod_affinity,
    },
)
label_keys = st.sampled_from(
    ["pool", "kubernetes.io/os", "node-role.kubernetes.io/worker", "a" * 63, "x.y/Z_z-9"]
)
label_values = st.sampled_from(["", "linux", "eu-1a", "A.b_c-9", "v" * 63])
tolerations = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "key": label_keys,
            "operator": st.sampled_from(["Exists", "Equal", "", None]),
            "value": label_values,
            "effect": st.sampled_from(["", "NoSchedule", "PreferNoSchedule", "NoExecute"]),
            "tolerationSeconds": huge_integers,
        },
    ),
    max_size=3,
)
node_selectors = st.dictionaries(label_keys, label_values, max_size=4)
annotations = st.dictionaries(
    st.one_of(label_keys, st.sampled_from(["Example.COM/Note", "UPPER.example.com/a"])),
    printable,
    max_size=4,
)
SHAPED = {
    "NODE_SELECTOR": node_selectors,
    "AFFINITY": affinities,
    "TOLERATIONS": tolerations,
    "DAEMONSET_ANNOTATIONS": annotations,
}


def _slots(value):
    """Every (container, key or index) in a JSON value, for mutation."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict | list):
            for slot in item.keys() if isinstance(item, dict) else range(len(item)):
                yield item, slot
                stack.append(item[slot])


@st.composite
def mutated(draw, shaped):
    """A shaped value with, now and then, arbitrary JSON or an unknown field in odd places."""
    value = draw(shaped)
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        slots = list(_slots(value))
        if not slots:
            break
        container, slot = draw(st.sampled_from(slots))
        if isinstance(container, dict) and draw(st.booleans()):
            container[draw(json_keys)] = draw(json_values)  # a field of any name
        else:
            container[slot] = draw(json_values)  # a value of any type
    return value


def setting(variable):
    strategies = [st.sampled_from(GOOD[variable]), text, not_quite_json]
    if variable in JSON_VARIABLES:
        strategies += [json_text(mutated(SHAPED[variable])), json_text(), deep_json]
    return st.one_of(strategies)


environments = st.fixed_dictionaries(
    {}, optional={variable: setting(variable) for variable in VARIABLES}
)


def load_or_problems(env):
    """The Config, or None after checking that every problem is one line naming its variable."""
    try:
        config = load_config(env)
    except ConfigError as err:
        event("problems")
        assert err.problems
        for problem in err.problems:
            assert isinstance(problem, str) and problem.strip()
            assert "\n" not in problem, problem
            variable = problem.split("=", 1)[0].split(" ", 1)[0]
            assert variable in VARIABLES, problem
            # Only a variable that is set has problems of its own, except the required IMAGES
            # and a request compared with a limit that is set.
            set_here = (env.get(variable) or "").strip() != ""
            request_vs_limit = " is more than " in problem
            assert set_here or variable == "IMAGES" or request_vs_limit, problem
        return None
    event("config")
    return config


def assert_serialisable(config: Config):
    """Everything taken from JSON survives what the controller and the CLI do with it."""
    for value in (
        dict(config.node_selector),
        dict(config.affinity),
        [dict(t) for t in config.tolerations],
        dict(config.daemonset_annotations),
        config.summary(),
    ):
        assert copy.deepcopy(value) == value
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        assert json.loads(text.encode("utf-8")) == value
        yaml.safe_dump(value)


IMAGES = {"IMAGES": "java=quay.io/eclipse/java:17;"}


@BOUNDED
@given(environments)
def test_any_environment_gives_a_config_or_listed_problems(env):
    config = load_or_problems(env)
    if config is not None:
        assert_serialisable(config)


@BOUNDED
@given(
    st.sampled_from(VARIABLES),
    st.one_of(text, json_text(), not_quite_json, deep_json),
)
def test_any_single_value_gives_a_config_or_problems_naming_that_variable(variable, value):
    config = load_or_problems({**IMAGES, variable: value})
    if config is not None:
        assert_serialisable(config)


@BOUNDED
@given(
    st.fixed_dictionaries(
        {},
        optional={
            variable: json_text(mutated(SHAPED[variable])) | json_text(SHAPED[variable])
            for variable in JSON_VARIABLES
        },
    )
)
def test_json_settings_that_load_survive_deepcopy_and_serialisation(settings_json):
    config = load_or_problems({**IMAGES, **settings_json})
    if config is not None:
        assert_serialisable(config)
        for variable, raw in settings_json.items():
            loaded = getattr(config, variable.lower())
            as_json = [dict(t) for t in loaded] if variable == "TOLERATIONS" else dict(loaded)
            assert as_json == json.loads(raw)


# Every field of a toleration now and then of any JSON type.
tolerations_of_any_type = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "key": label_keys | json_values,
            "operator": st.sampled_from(["Exists", "Equal", ""]) | json_values,
            "value": label_values | json_values,
            "effect": st.sampled_from(["", "NoSchedule", "NoExecute"]) | json_values,
            "tolerationSeconds": huge_integers | json_values,
        },
    ),
    max_size=3,
)


@BOUNDED
@given(json_text(mutated(tolerations)) | json_text(tolerations_of_any_type))
def test_tolerations_with_any_field_of_any_type(raw):
    config = load_or_problems({**IMAGES, "TOLERATIONS": raw})
    if config is not None:
        assert [dict(t) for t in config.tolerations] == json.loads(raw)
        assert_serialisable(config)
