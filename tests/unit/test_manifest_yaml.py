"""Manifest YAML: every string reads back as the same string, whichever YAML reader reads it."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from imagepuller.manifest_yaml import dump_manifest, needs_quotes


@dataclass(frozen=True)
class NotAString:
    """What a stricter reader made of a plain scalar that PyYAML would have read as a string."""

    text: str


# PyYAML's safe reader, parsing in C where libyaml is there (the property tests read a lot);
# resolving plain scalars to types happens in Python either way, with the same resolvers.
try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]


class StrictLoader(_SafeLoader):
    """PyYAML's YAML 1.1 reader plus what other readers take as non-strings.

    Written from the specifications, independently of ``needs_quotes``: the YAML 1.2 core schema
    (10.3.2), YAML 1.1's ``y``/``n`` booleans, and go-yaml's integers (``strconv.ParseInt`` with
    base 0, after dropping ``_``), which is what kubectl reads manifests with.
    """


_NOT_A_STRING = "tag:imagepuller.test,2024:not-a-string"
for _pattern in (
    r"[-+]?[0-9]+",  # 1.2 int
    r"0o[0-7]+",  # 1.2 octal
    r"0x[0-9a-fA-F]+",  # 1.2 hex
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?",  # 1.2 float
    r"[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)",  # 1.2 infinities, not-a-number
    r"true|True|TRUE|false|False|FALSE|null|Null|NULL|~",  # 1.2 booleans, null
    r"y|Y|n|N",  # 1.1 booleans PyYAML leaves out
    r"[-+]?(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*)",  # go-yaml integers
):
    StrictLoader.add_implicit_resolver(_NOT_A_STRING, re.compile(rf"^(?:{_pattern})$"), None)


def _not_a_string(loader: yaml.SafeLoader, node: yaml.Node) -> NotAString:
    assert isinstance(node, yaml.ScalarNode)
    return NotAString(loader.construct_scalar(node))


StrictLoader.add_constructor(_NOT_A_STRING, _not_a_string)


def strict_load(text: str) -> object:
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a safe loader


def test_the_strict_loader_does_catch_what_pyyaml_misses():
    # Otherwise the tests below would prove nothing.
    for plain in ("1e3", "0o17", "0O17", "+.5", "1e-1", "y"):
        assert yaml.safe_load(f"k: {plain}") == {"k": plain}  # PyYAML: a string
        assert strict_load(f"k: {plain}") != {"k": plain}  # another reader: not one


AMBIGUOUS = [
    "1e3",
    "1E3",
    "1e-1",
    "0o17",
    "+.5",
    "-.5",
    ".5",
    "0x1F",
    "0b101",
    "1_000",
    ".inf",
    "-.Inf",
    ".NaN",
    "yes",
    "on",
    "Off",
    "y",
    "N",
    "~",
    "null",
    "NULL",
    "true",
    "12:30:00",
    "2001-12-14",
    "2001-12-14T21:59:43.10-05:00",
    "0",
    "007",
    "",
    "<<",
    "=",
]


@pytest.mark.parametrize("text", AMBIGUOUS)
def test_ambiguous_strings_are_quoted_and_read_back_as_strings(text):
    manifest = {"key": text, text: [text], "nested": {"list": [{"name": text}]}}
    out = dump_manifest(manifest)
    assert strict_load(out) == manifest
    assert yaml.safe_load(out) == manifest
    assert needs_quotes(text)


@pytest.mark.parametrize(
    "text", ["busybox", "quay.io/a:1", "20Mi", "720h", "/kip/sleep", "-c", "3088d3603dbcffd1"]
)
def test_ordinary_strings_stay_plain(text):
    assert dump_manifest({"k": text}) == f"k: {text}\n"


def test_non_strings_keep_their_types_and_order():
    manifest = {"z": 1, "a": True, "f": 1.5, "n": None, "s": "x"}
    out = dump_manifest(manifest)
    assert out.splitlines()[0] == "z: 1"
    assert strict_load(out) == manifest


_number_like = st.from_regex(
    r"\A[-+]?(0[xob])?[0-9_.:eE+-]{0,8}\Z", fullmatch=True
) | st.sampled_from(AMBIGUOUS)


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.text() | _number_like)
def test_any_string_reads_back_as_itself(text):
    manifest = {text: [text, {"v": text}]}
    assert strict_load(dump_manifest(manifest)) == manifest
