"""Image lists (`imagepuller.imagelists`): reading, checking, naming and merging the Dev Spaces
registries' `external_images.txt` files. Network tests use tests/listserver.py on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import random
import socket
import sys
import threading
import time

import pytest

from imagepuller import imagelists
from imagepuller.imagelists import (
    ListUnavailable,
    format_images,
    hashed_name,
    is_valid_name,
    merge_images,
    name_images,
    parse_list,
    plain_name,
    read_source,
    ssl_context,
    too_many,
)
from imagepuller.imageparsers import INIT_CONTAINER_NAME, CachedImage
from imagepuller.imageref import check_image_reference
from tests.listserver import ListServer

DIGEST = "sha256:" + "0123456789abcdef" * 4
UDI = f"quay.io/devfile/universal-developer-image@{DIGEST}"
CHE_CODE = "quay.io/che-incubator/che-code:latest"
LABEL_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")

# The devfile registry's shape: sorted, unique, digest-pinned, final newline.
DEVFILE_LIST = (
    "\n".join(
        [
            f"quay.io/devfile/base-developer-image@sha256:{'1' * 64}",
            f"quay.io/devfile/universal-developer-image@sha256:{'2' * 64}",
            f"registry.access.redhat.com/ubi8/openjdk-17@sha256:{'3' * 64}",
        ]
    )
    + "\n"
)
# The plugin registry's shape: unsorted, entries repeated, no final newline.
PLUGIN_LIST = "\n".join(
    [
        "quay.io/che-incubator/che-code:latest",
        "quay.io/che-incubator/che-idea:next",
        "quay.io/che-incubator/che-code:latest",
        "quay.io/aaa/first:1",
        "quay.io/che-incubator/che-idea:next",
        "quay.io/che-incubator/che-code:latest",
    ]
)


def short_hash(reference: str, length: int = 6) -> str:
    return hashlib.sha256(reference.encode()).hexdigest()[:length]


def mapping(images) -> dict[str, str]:
    return {image.image: image.name for image in images}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # urllib honours *_proxy from the environment: the local server must be reached directly.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")


# --- parsing -------------------------------------------------------------------------------


def test_devfile_registry_shape_is_read_in_file_order():
    listed = parse_list(DEVFILE_LIST, "devfile.txt")
    assert listed.source == "devfile.txt"
    assert listed.references == tuple(DEVFILE_LIST.splitlines())
    assert listed.problems == ()


def test_plugin_registry_shape_drops_duplicates_keeping_first_occurrences():
    listed = parse_list(PLUGIN_LIST, "plugin.txt")
    assert listed.references == (
        "quay.io/che-incubator/che-code:latest",
        "quay.io/che-incubator/che-idea:next",
        "quay.io/aaa/first:1",
    )
    assert listed.problems == ()


def test_last_line_without_newline_is_read():
    assert parse_list("quay.io/a/b:1\nquay.io/a/c:1", "l").references == (
        "quay.io/a/b:1",
        "quay.io/a/c:1",
    )


def test_comments_blank_and_whitespace_only_lines_are_skipped():
    text = (
        "# images of the devfile registry\n"
        "\n"
        "   \n"
        "\t\n"
        "quay.io/a/one:1\n"
        "  # an indented comment\n"
        "   quay.io/a/two:1   \n"
        "\tquay.io/a/three:1\t\n"
        "\n"
    )
    listed = parse_list(text, "l.txt")
    assert listed.references == ("quay.io/a/one:1", "quay.io/a/two:1", "quay.io/a/three:1")
    assert listed.problems == ()


def test_crlf_line_endings():
    text = f"# list\r\n{CHE_CODE}\r\n\r\n{UDI}\r\nquay.io/a/b:1"
    listed = parse_list(text, "crlf.txt")
    assert listed.references == (CHE_CODE, UDI, "quay.io/a/b:1")
    assert all("\r" not in reference for reference in listed.references)
    assert listed.problems == ()


def test_crlf_line_numbers_of_problems_are_physical_lines():
    listed = parse_list("quay.io/a/b:1\r\n\r\n# c\r\nBad Ref\r\n", "crlf.txt")
    assert listed.problems[0].startswith("crlf.txt:4: 'Bad Ref' skipped: ")


def test_invalid_references_are_reported_with_source_and_line_and_skipped():
    text = "\n".join(
        [
            "# header",  # 1
            CHE_CODE,  # 2
            "",  # 3
            "quay.io/Team/Upper:1",  # 4: upper-case path
            UDI,  # 5
            "quay.io/a/b@sha256:abc",  # 6: short digest
            "quay.io/a/b:1 # trailing comment",  # 7
            "quay.io/a/valid:2",  # 8
            "quay.io/a/b@md5:" + "0" * 32,  # 9: unknown algorithm
        ]
    )
    listed = parse_list(text, "list.txt")
    assert listed.references == (CHE_CODE, UDI, "quay.io/a/valid:2")
    assert [problem.split(" ", 1)[0] for problem in listed.problems] == [
        "list.txt:4:",
        "list.txt:6:",
        "list.txt:7:",
        "list.txt:9:",
    ]
    assert listed.problems[0].startswith("list.txt:4: 'quay.io/Team/Upper:1' skipped: ")
    assert "sha256 digest is 64" in listed.problems[1]
    assert "'quay.io/a/b:1 # trailing comment'" in listed.problems[2]
    assert "'md5' is not supported" in listed.problems[3]


def test_an_invalid_line_is_reported_each_time_it_appears():
    listed = parse_list("bad ref\nquay.io/a/b:1\nbad ref\n", "l")
    assert [problem.split(" ", 1)[0] for problem in listed.problems] == ["l:1:", "l:3:"]
    assert listed.references == ("quay.io/a/b:1",)


def test_a_long_invalid_line_is_shortened_in_its_problem():
    line = "X" * 5000
    (problem,) = parse_list(line, "l").problems
    assert problem.startswith("l:1: 'XXX")
    assert "..." in problem
    assert len(problem) < 500


def test_duplicate_keeps_its_first_position():
    listed = parse_list("quay.io/a/z:1\nquay.io/a/y:1\nquay.io/a/z:1\nquay.io/a/x:1\n", "l")
    assert listed.references == ("quay.io/a/z:1", "quay.io/a/y:1", "quay.io/a/x:1")


def test_nothing_but_comments_gives_no_reference_and_no_problem():
    listed = parse_list("# one\n\n# two\n", "l")
    assert listed.references == ()
    assert listed.problems == ()


def test_line_numbers_count_only_newlines():
    listed = parse_list("quay.io/a/b:1\x0c\nBAD\n", "l")
    assert listed.problems[0].startswith("l:2:")


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "name"),
    [
        (CHE_CODE, "che-code"),
        (UDI, "universal-developer-image"),
        (
            f"quay.io/devfile/universal-developer-image:ubi8-latest@{DIGEST}",
            "universal-developer-image",
        ),
        ("quay.io/team/che_code:1", "che-code"),
        ("example.com/Team/Che_Code:1", "che-code"),
        ("localhost:5000/team/tool:1.2", "tool"),
        ("busybox", "busybox"),
        ("busybox:1.36", "busybox"),
        ("quay.io/team/my.image:1", "my.image"),
    ],
)
def test_plain_name(reference, name):
    assert plain_name(reference) == name


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("che-code", True),
        ("a", True),
        ("1e3", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("", False),
        ("-a", False),
        ("a-", False),
        ("my.image", False),
        ("Upper", False),
        ("a_b", False),
        (INIT_CONTAINER_NAME, False),
    ],
)
def test_is_valid_name(name, valid):
    assert is_valid_name(name) is valid


def test_unique_valid_plain_names_are_used_as_they_are():
    images = name_images([UDI, CHE_CODE, "quay.io/team/che_idea:next"])
    assert images == (
        CachedImage("universal-developer-image", UDI),
        CachedImage("che-code", CHE_CODE),
        CachedImage("che-idea", "quay.io/team/che_idea:next"),
    )


def test_a_segment_that_is_no_label_gets_a_hash():
    reference = "quay.io/team/my.image:1"
    (image,) = name_images([reference])
    assert image.name == f"my-image-{short_hash(reference)}"
    assert image.name == hashed_name(reference)
    assert is_valid_name(image.name)


def test_a_segment_of_exactly_63_characters_stays_plain():
    segment = "a" * 30 + "-" + "b" * 32
    assert len(segment) == 63
    reference = f"quay.io/team/{segment}:1"
    check_image_reference(reference)
    assert name_images([reference]) == (CachedImage(segment, reference),)


@pytest.mark.parametrize("length", [64, 65, 100, 200])
def test_a_longer_segment_is_cut_and_hashed(length):
    segment = ("abc-" * 60)[: length - 1] + "z"
    reference = f"quay.io/team/{segment}:1"
    check_image_reference(reference)
    (image,) = name_images([reference])
    assert len(image.name) <= 63
    assert is_valid_name(image.name)
    assert image.name.endswith("-" + short_hash(reference))
    head = image.name[: -len(short_hash(reference)) - 1]
    assert segment.startswith(head)
    assert len(head) >= 50


def test_a_cut_that_ends_in_a_dash_drops_the_dash():
    # The cut falls right after a '-': the name must not end up with '--hash'.
    segment = "a" * 55 + "-" + "b" * 20
    reference = f"quay.io/team/{segment}:1"
    name = hashed_name(reference)
    assert name == "a" * 55 + "-" + short_hash(reference)
    assert is_valid_name(name)


def test_hashed_name_depends_on_the_whole_reference():
    one, two = hashed_name("quay.io/a/tool:1"), hashed_name("quay.io/a/tool:2")
    assert one != two
    assert one.startswith("tool-") and two.startswith("tool-")
    assert hashed_name("quay.io/a/tool:1") == one  # deterministic


def test_hashed_name_lengthens_the_hash_when_the_name_is_taken():
    reference = "quay.io/a/tool:1"
    first = hashed_name(reference)
    second = hashed_name(reference, taken={first})
    assert second != first
    assert second == f"tool-{short_hash(reference, 8)}"
    third = hashed_name(
        "quay.io/a/" + "t" * 80 + ":1", taken={hashed_name("quay.io/a/" + "t" * 80 + ":1")}
    )
    assert len(third) <= 63
    assert is_valid_name(third)


def test_two_new_references_with_one_plain_name_both_get_differing_hashed_names():
    one, two = "quay.io/a/tool:1", "docker.io/b/tool:2"
    images = name_images([one, two, CHE_CODE])
    names = mapping(images)
    assert names[one] != "tool" and names[two] != "tool"
    assert names[one] != names[two]
    assert names[one] == f"tool-{short_hash(one)}"
    assert names[two] == f"tool-{short_hash(two)}"
    assert names[CHE_CODE] == "che-code"


def test_names_do_not_depend_on_the_order_references_come_in():
    references = ["quay.io/a/tool:1", "docker.io/b/tool:2", CHE_CODE, UDI, "quay.io/a/x.y:1"]
    assert mapping(name_images(references)) == mapping(name_images(references[::-1]))


def test_the_init_container_name_is_never_used():
    reference = f"quay.io/team/{INIT_CONTAINER_NAME}:1"
    (image,) = name_images([reference])
    assert image.name != INIT_CONTAINER_NAME
    assert image.name.startswith(INIT_CONTAINER_NAME + "-")
    assert is_valid_name(image.name)
    # Not from `keep` either.
    (kept,) = name_images([CHE_CODE], keep={CHE_CODE: INIT_CONTAINER_NAME})
    assert kept.name == "che-code"


def test_names_in_taken_are_not_used():
    images = name_images([CHE_CODE], taken={"che-code"})
    assert images[0].name == f"che-code-{short_hash(CHE_CODE)}"


def test_names_of_a_large_colliding_set_are_unique_valid_labels():
    segments = [
        "che-code",
        "che_code",
        "tool",
        "my.image",
        INIT_CONTAINER_NAME,
        "a" * 63,
        "b" * 64,
        "c-" * 60 + "c",
        "x",
        "1e3",
        "a__b",
        "universal-developer-image",
    ]
    references = [
        f"r{i % 7}.example.com/team{i % 11}/{segments[i % len(segments)]}:{i}" for i in range(500)
    ]
    for reference in references:
        check_image_reference(reference)
    images = name_images(references)
    assert [image.image for image in images] == references
    names = [image.name for image in images]
    assert len(set(names)) == 500
    assert INIT_CONTAINER_NAME not in names
    for name in names:
        assert len(name) <= 63
        assert is_valid_name(name), name
        assert set(name) <= LABEL_CHARS


# --- stability -----------------------------------------------------------------------------


def test_adding_an_image_renames_no_other():
    before = name_images([CHE_CODE, UDI, "quay.io/a/tool:1", "quay.io/b/tool:1"])
    keep = mapping(before)
    # A new image whose plain name is an existing one's, and one with a fresh name.
    added = ["quay.io/other/che-code:next", "quay.io/c/fresh:1"]
    after = name_images([*keep, *added], keep=keep)
    names = mapping(after)
    for reference, name in keep.items():
        assert names[reference] == name
    assert names["quay.io/other/che-code:next"] != "che-code"
    assert is_valid_name(names["quay.io/other/che-code:next"])
    assert names["quay.io/c/fresh:1"] == "fresh"
    assert len(set(names.values())) == len(names)


def test_removing_an_image_renames_no_other():
    one, two = "quay.io/a/tool:1", "quay.io/b/tool:1"
    keep = mapping(name_images([CHE_CODE, one, two]))
    after = mapping(name_images([CHE_CODE, one], keep=keep))
    # Without `keep` the remaining `tool` would become plain: kept, it stays hashed.
    assert after == {CHE_CODE: "che-code", one: keep[one]}
    assert mapping(name_images([CHE_CODE, one]))[one] == "tool"


def test_keep_for_a_reference_not_listed_is_ignored():
    assert name_images([CHE_CODE], keep={"quay.io/gone/x:1": "che-code"}) == (
        CachedImage("che-code", CHE_CODE),
    )


def test_invalid_or_doubled_kept_names_are_replaced():
    one, two = "quay.io/a/one:1", "quay.io/a/two:1"
    names = mapping(
        name_images([one, two, CHE_CODE], keep={one: "same", two: "same", CHE_CODE: "Bad_Name"})
    )
    assert names[one] == "same"
    assert names[two] == "two"
    assert names[CHE_CODE] == "che-code"


def test_stability_over_a_large_set_with_removals_and_colliding_additions():
    rng = random.Random(7)
    segments = ["tool", "che-code", "a.b", "x" * 70, "udi"]
    references = [f"quay.io/t{i % 9}/{segments[i % 5]}:{i}" for i in range(300)]
    keep = mapping(name_images(references))
    remaining = rng.sample(references, 250)
    additions = [f"docker.io/n{i % 4}/{segments[i % 5]}:{i}" for i in range(60)]
    after = mapping(name_images(remaining + additions, keep=keep))
    for reference in remaining:
        assert after[reference] == keep[reference]
    assert len(set(after.values())) == len(after)
    assert all(is_valid_name(name) for name in after.values())


def test_merge_keeps_existing_first_skips_held_sorts_and_avoids_taken_names():
    existing = (
        CachedImage("udi", UDI),
        CachedImage("code", CHE_CODE),
        CachedImage("tool", "quay.io/mine/tool:1"),
    )
    references = [
        "quay.io/z/zeta:1",
        CHE_CODE,
        "quay.io/other/tool:2",
        "quay.io/a/alpha:1",
        UDI,
        "quay.io/a/alpha:1",
    ]
    merged = merge_images(existing, references)
    assert merged[:3] == existing
    assert [image.image for image in merged[3:]] == [
        "quay.io/a/alpha:1",
        "quay.io/other/tool:2",
        "quay.io/z/zeta:1",
    ]
    names = mapping(merged[3:])
    assert names["quay.io/a/alpha:1"] == "alpha"
    assert names["quay.io/z/zeta:1"] == "zeta"
    assert names["quay.io/other/tool:2"] == f"tool-{short_hash('quay.io/other/tool:2')}"
    assert len({image.name for image in merged}) == len(merged)


def test_merge_of_nothing_new_is_the_existing_value():
    existing = (CachedImage("code", CHE_CODE),)
    assert merge_images(existing, [CHE_CODE]) == existing
    assert merge_images((), []) == ()


def test_merge_keeps_names_given_for_new_references():
    merged = merge_images(
        (CachedImage("code", CHE_CODE),), [UDI, "quay.io/a/b:1"], keep={UDI: "udi"}
    )
    assert mapping(merged) == {CHE_CODE: "code", UDI: "udi", "quay.io/a/b:1": "b"}


def test_format_images():
    images = (CachedImage("che-code", CHE_CODE), CachedImage("udi", UDI))
    assert format_images(images) == f"che-code={CHE_CODE};udi={UDI};"
    assert format_images(()) == ""


def test_too_many_is_none_at_the_limit_and_a_message_above_it():
    assert too_many(0, 1) is None
    assert too_many(100, 100) is None
    message = too_many(101, 100)
    assert message is not None
    assert "101" in message and "100" in message
    assert "IMAGES_FROM_MAX_IMAGES" in message


# --- reading -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_server():
    # One server for the module: stopping one waits out serve_forever's 0.5 s poll.
    with ListServer() as server:
        yield server


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    server = ListServer().with_tls(tmp_path_factory.mktemp("tls"))
    server.files["/list.txt"] = DEVFILE_LIST.encode()
    with server:
        yield server


@pytest.fixture
def silent_listener():
    """A port that accepts connections (the kernel's backlog) but never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_read_a_file(tmp_path):
    path = tmp_path / "external_images.txt"
    path.write_bytes(b"# c\r\n" + PLUGIN_LIST.encode())
    listed = read_source(str(path))
    assert listed.source == str(path)
    assert listed.references == parse_list(PLUGIN_LIST, "x").references


def test_problems_of_a_file_name_the_file(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("quay.io/a/b:1\nBAD\n")
    listed = read_source(str(path))
    assert listed.problems[0].startswith(f"{path}:2: 'BAD' skipped")


def test_a_bom_at_the_start_is_ignored(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + f"{CHE_CODE}\r\n{UDI}\r\n".encode())
    listed = read_source(str(path))
    assert listed.references == (CHE_CODE, UDI)
    assert listed.problems == ()


def test_read_standard_input():
    listed = read_source("-", stdin=io.BytesIO(b"\xef\xbb\xbf" + PLUGIN_LIST.encode() + b"\nBAD"))
    assert listed.source == "standard input"
    assert listed.references == parse_list(PLUGIN_LIST, "x").references
    assert listed.problems[0].startswith("standard input:7: 'BAD'")


def test_standard_input_over_max_bytes_fails():
    with pytest.raises(ListUnavailable) as caught:
        read_source("-", stdin=io.BytesIO(b"quay.io/a/b:1\n" * 10), max_bytes=20)
    assert caught.value.source == "standard input"
    assert "IMAGES_FROM_MAX_BYTES" in caught.value.reason


def test_read_over_http_and_see_an_edit(http_server):
    http_server.files["/a/external_images.txt"] = DEVFILE_LIST.encode()
    url = http_server.url("/a/external_images.txt")
    assert url.startswith("http://127.0.0.1:")
    listed = read_source(url, timeout=5)
    assert listed.source == url
    assert listed.references == tuple(DEVFILE_LIST.splitlines())
    http_server.files["/a/external_images.txt"] = PLUGIN_LIST.encode()
    assert read_source(url, timeout=5).references == parse_list(PLUGIN_LIST, "x").references
    assert http_server.requests[-2:] == ["/a/external_images.txt"] * 2


def test_problems_of_a_url_name_the_url(http_server):
    http_server.files["/problems"] = b"quay.io/a/b:1\n\nnot valid\n"
    url = http_server.url("/problems")
    listed = read_source(url, timeout=5)
    assert listed.references == ("quay.io/a/b:1",)
    assert listed.problems[0].startswith(f"{url}:3: 'not valid' skipped")


def test_read_over_https_with_the_ca_as_pem_text(tls_server):
    assert tls_server.url("/list.txt").startswith("https://")
    listed = read_source(tls_server.url("/list.txt"), timeout=5, ca_bundle=tls_server.ca_pem)
    assert listed.references == tuple(DEVFILE_LIST.splitlines())


def test_read_over_https_with_the_ca_as_a_file(tls_server, tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(tls_server.ca_pem)
    listed = read_source(tls_server.url("/list.txt"), timeout=5, ca_bundle=str(ca_file))
    assert listed.references == tuple(DEVFILE_LIST.splitlines())


def test_https_without_the_ca_fails_naming_the_ca_setting(tls_server):
    with pytest.raises(ListUnavailable) as caught:
        read_source(tls_server.url("/list.txt"), timeout=5)
    assert caught.value.source == tls_server.url("/list.txt")
    assert "not trusted" in caught.value.reason
    assert "IMAGES_FROM_CA_BUNDLE" in caught.value.reason


def test_ssl_context_verifies_and_adds_the_bundle(tls_server):
    import ssl

    plain = ssl_context(None)
    assert plain.verify_mode == ssl.CERT_REQUIRED
    assert plain.check_hostname
    with_ca = ssl_context(tls_server.ca_pem)
    assert with_ca.cert_store_stats()["x509_ca"] == plain.cert_store_stats()["x509_ca"] + 1


def test_http_404_names_the_status(http_server):
    url = http_server.url("/missing")
    with pytest.raises(ListUnavailable) as caught:
        read_source(url, timeout=5)
    caught.value.__context__.close()  # see test_an_http_error_response_is_closed
    assert caught.value.source == url
    assert "HTTP 404" in caught.value.reason
    # The code only: the reason phrase is the server's text, and this reason becomes an Event.
    assert str(caught.value) == f"{url}: the server answered HTTP 404"


def test_an_http_error_response_is_closed(http_server):
    with pytest.raises(ListUnavailable) as caught:
        read_source(http_server.url("/missing-too"), timeout=5)
    error = caught.value.__context__
    try:
        assert error.fp is None or error.fp.closed
    finally:
        error.close()


def test_connection_refused_fails_cleanly():
    url = f"http://127.0.0.1:{free_port()}/list.txt"
    with pytest.raises(ListUnavailable) as caught:
        read_source(url, timeout=2)
    assert caught.value.source == url
    assert "cannot connect" in caught.value.reason


@pytest.mark.parametrize("scheme", ["http", "ftp"])
def test_a_malformed_or_unsupported_url_fails_cleanly(scheme):
    with pytest.raises(ListUnavailable):
        read_source(f"{scheme}://", timeout=1)


def test_a_body_over_max_bytes_fails_and_one_at_it_is_read(http_server):
    body = b"quay.io/a/b:1\n" * 100  # 1400 bytes
    http_server.files["/big"] = body
    url = http_server.url("/big")
    with pytest.raises(ListUnavailable) as caught:
        read_source(url, timeout=5, max_bytes=len(body) - 1)
    assert "IMAGES_FROM_MAX_BYTES" in caught.value.reason
    assert f"larger than {len(body) - 1} bytes" in caught.value.reason
    assert read_source(url, timeout=5, max_bytes=len(body)).references == ("quay.io/a/b:1",)


def test_a_body_far_over_max_bytes_fails(http_server):
    http_server.files["/huge"] = b"#" * (3 * 1024 * 1024)
    with pytest.raises(ListUnavailable) as caught:
        read_source(http_server.url("/huge"), timeout=5, max_bytes=1024 * 1024)
    assert "IMAGES_FROM_MAX_BYTES" in caught.value.reason


def test_a_file_over_max_bytes_fails(tmp_path):
    path = tmp_path / "l.txt"
    path.write_bytes(b"quay.io/a/b:1\n" * 10)
    with pytest.raises(ListUnavailable) as caught:
        read_source(str(path), max_bytes=139)
    assert "IMAGES_FROM_MAX_BYTES" in caught.value.reason
    assert read_source(str(path), max_bytes=140).references == ("quay.io/a/b:1",)


def test_non_utf8_bytes_fail(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"quay.io/a/b:1\nquay.io/a/caf\xe9:1\n")
    with pytest.raises(ListUnavailable) as caught:
        read_source(str(path))
    assert "not UTF-8" in caught.value.reason
    assert "byte 27" in caught.value.reason  # the é, after 14 + 13 bytes


def test_non_utf8_bytes_over_http_fail(http_server):
    http_server.files["/utf16"] = "quay.io/a/b:1\n".encode("utf-16")
    with pytest.raises(ListUnavailable) as caught:
        read_source(http_server.url("/utf16"), timeout=5)
    assert "not UTF-8" in caught.value.reason


def test_a_missing_file_fails(tmp_path):
    path = tmp_path / "nope.txt"
    with pytest.raises(ListUnavailable) as caught:
        read_source(str(path))
    assert caught.value.source == str(path)
    assert "cannot read the file" in caught.value.reason
    assert "No such file" in caught.value.reason


def test_a_directory_fails(tmp_path):
    with pytest.raises(ListUnavailable) as caught:
        read_source(str(tmp_path))
    assert "cannot read the file" in caught.value.reason


@pytest.mark.timeout(10)
def test_a_server_that_never_answers_fails_within_the_timeout(silent_listener):
    url = f"http://127.0.0.1:{silent_listener}/list.txt"
    started = time.monotonic()
    with pytest.raises(ListUnavailable) as caught:
        read_source(url, timeout=0.5)
    elapsed = time.monotonic() - started
    assert elapsed < 3
    assert "0.5 s" in caught.value.reason
    assert "IMAGES_FROM_TIMEOUT" in caught.value.reason


@pytest.mark.timeout(10)
def test_an_https_server_that_never_answers_fails_within_the_timeout(silent_listener):
    url = f"https://127.0.0.1:{silent_listener}/list.txt"
    started = time.monotonic()
    with pytest.raises(ListUnavailable) as caught:
        read_source(url, timeout=0.5)
    assert time.monotonic() - started < 3
    # The TLS handshake times out: named as the setting that bounds it, as over HTTP.
    assert "0.5 s" in caught.value.reason
    assert "IMAGES_FROM_TIMEOUT" in caught.value.reason


@pytest.fixture
def trickling_server():
    """A server that answers its headers at once, then one body byte every 0.1 s."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n")
            for _ in range(15):
                if stop.wait(0.1):
                    return
                try:
                    connection.sendall(b"#")
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/list.txt"
    stop.set()
    thread.join(5)
    listener.close()


@pytest.mark.timeout(10)
def test_a_trickling_server_is_cut_off_at_the_timeout(trickling_server):
    started = time.monotonic()
    with pytest.raises(ListUnavailable) as caught:
        read_source(trickling_server, timeout=0.25)
    assert time.monotonic() - started < 1.0
    assert "IMAGES_FROM_TIMEOUT" in caught.value.reason


def test_an_unreadable_ca_bundle_is_a_list_unavailable(tmp_path):
    with pytest.raises(ListUnavailable):
        read_source("https://127.0.0.1:1/list.txt", timeout=1, ca_bundle=str(tmp_path / "no.pem"))


def test_closed_standard_input_is_a_list_unavailable(monkeypatch):
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(ListUnavailable):
        read_source("-")


def test_is_url():
    assert imagelists.is_url("http://x/l")
    assert imagelists.is_url("https://x/l")
    assert not imagelists.is_url("-")
    assert not imagelists.is_url("./http/list.txt")
