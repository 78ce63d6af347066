"""`imagepuller images SOURCE...`: the IMAGES value made from external_images.txt lists, called
as `main([...])`. Exit codes: 0 ok, 1 unreadable source / over a limit / no image, 2 usage."""

from __future__ import annotations

import gc
import hashlib
import io
import re
import socket
import sys
import warnings

import pytest
import yaml

from imagepuller.cli import main
from imagepuller.config import load_config, parse_images
from imagepuller.imageparsers import CachedImage
from tests.listserver import ListServer

DIGEST = "sha256:" + "0123456789abcdef" * 4
UDI = f"quay.io/devfile/universal-developer-image@{DIGEST}"
CHE_CODE = "quay.io/che-incubator/che-code:latest"
IDEA = "quay.io/che-incubator/che-idea:next"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")


@pytest.fixture
def write(tmp_path):
    """write(name, text_or_bytes) -> the path (str) of a list file in tmp_path."""

    def _write(name: str, content: str | bytes) -> str:
        path = tmp_path / name
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)
        return str(path)

    return _write


def short_hash(reference: str) -> str:
    return hashlib.sha256(reference.encode()).hexdigest()[:6]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["images", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_prints_the_value_on_one_line(capsys, write):
    path = write("list.txt", f"{UDI}\n{CHE_CODE}\n")
    code, out, err = run(capsys, path)
    assert code == 0
    # New images come sorted by reference.
    assert out == f"che-code={CHE_CODE};universal-developer-image={UDI};\n"
    assert err == ""


def test_the_plugin_registry_shape(capsys, write):
    path = write("plugin.txt", f"{IDEA}\r\n{CHE_CODE}\r\n{IDEA}\r\n# c\r\n\r\n  {CHE_CODE}")
    code, out, _ = run(capsys, path)
    assert code == 0
    assert out == f"che-code={CHE_CODE};che-idea={IDEA};\n"


def test_problems_go_to_stderr_with_file_and_line(capsys, write):
    path = write("list.txt", f"# images\n{CHE_CODE}\n\nquay.io/Bad/Ref:1\n{UDI}\nnot a ref\n")
    code, out, err = run(capsys, path)
    assert code == 0
    assert out == f"che-code={CHE_CODE};universal-developer-image={UDI};\n"
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"imagepuller images: {path}:4: 'quay.io/Bad/Ref:1' skipped: ")
    assert lines[1].startswith(f"imagepuller images: {path}:6: 'not a ref' skipped: ")
    assert "Traceback" not in err


def test_several_sources_are_merged_without_duplicates(capsys, write):
    one = write("one.txt", f"{CHE_CODE}\n{UDI}\n")
    two = write("two.txt", f"{IDEA}\n{CHE_CODE}")
    code, out, _ = run(capsys, one, two)
    assert code == 0
    assert out == f"che-code={CHE_CODE};che-idea={IDEA};universal-developer-image={UDI};\n"


def test_colliding_and_invalid_plain_names_are_hashed(capsys, write):
    other = "docker.io/other/che-code:1"
    dotted = "quay.io/team/my.tool:1"
    path = write("list.txt", f"{CHE_CODE}\n{other}\n{dotted}\n")
    code, out, _ = run(capsys, path)
    assert code == 0
    names = {image.image: image.name for image in parse_images(out)}
    assert names == {
        CHE_CODE: f"che-code-{short_hash(CHE_CODE)}",
        other: f"che-code-{short_hash(other)}",
        dotted: f"my-tool-{short_hash(dotted)}",
    }


def test_configmap_patch_output(capsys, write):
    path = write("list.txt", f"{CHE_CODE}\n{UDI}\n")
    code, out, _ = run(capsys, path, "-o", "configmap-patch")
    assert code == 0
    assert yaml.safe_load(out) == {
        "data": {"IMAGES": f"che-code={CHE_CODE};universal-developer-image={UDI};"}
    }


def test_configmap_patch_keeps_a_number_like_value_a_string(capsys, write):
    path = write("list.txt", "quay.io/x/1e3:1\n")
    code, out, _ = run(capsys, path, "--output", "configmap-patch")
    assert code == 0
    assert yaml.safe_load(out) == {"data": {"IMAGES": "1e3=quay.io/x/1e3:1;"}}


def test_merge_keeps_existing_names_and_order_and_adds_only_new_images(capsys, write):
    existing = f"udi={UDI};old=quay.io/x/old:1;code={CHE_CODE};"
    path = write("list.txt", f"{CHE_CODE}\nquay.io/z/zeta:1\n{UDI}\n{IDEA}\n")
    code, out, _ = run(capsys, path, "--merge", existing)
    assert code == 0
    assert out == f"{existing}che-idea={IDEA};zeta=quay.io/z/zeta:1;\n"


def test_merge_avoids_the_names_it_holds(capsys, write):
    new = "docker.io/other/che-code:2"
    path = write("list.txt", f"{new}\n")
    code, out, _ = run(capsys, path, "--merge", f"che-code={CHE_CODE}")
    assert code == 0
    assert out == f"che-code={CHE_CODE};che-code-{short_hash(new)}={new};\n"


def test_merge_with_nothing_new_prints_the_value_it_was_given(capsys, write):
    path = write("list.txt", f"{CHE_CODE}\n")
    code, out, _ = run(capsys, path, "--merge", f" code={CHE_CODE} ; ")
    assert code == 0
    assert out == f"code={CHE_CODE};\n"


def test_merge_of_an_updated_list_renames_nothing(capsys, write):
    first = write("v1.txt", f"{CHE_CODE}\n{UDI}\nquay.io/a/tool:1\nquay.io/b/tool:1\n")
    code, value, _ = run(capsys, first)
    assert code == 0
    before = parse_images(value)
    added = "docker.io/other/che-code:2"
    second = write("v2.txt", f"quay.io/b/tool:1\n{added}\n{CHE_CODE}\n")
    code, out, _ = run(capsys, second, "--merge", value.strip())
    assert code == 0
    after = parse_images(out)
    assert after[: len(before)] == before
    assert [image.image for image in after[len(before) :]] == [added]
    assert after[-1].name == f"che-code-{short_hash(added)}"


@pytest.mark.parametrize(
    "merge",
    [
        "x",
        "copy-sleep=quay.io/a/b:1",
        "a=quay.io/a/b:1;a=quay.io/a/c:1",
        "Bad_Name=quay.io/a/b:1",
        "a=quay.io/A/b:1",
    ],
)
def test_a_bad_merge_exits_2_naming_merge(capsys, write, merge):
    path = write("list.txt", f"{CHE_CODE}\n")
    code, out, err = run(capsys, path, "--merge", merge)
    assert code == 2
    assert out == ""
    assert err.startswith("imagepuller images: --merge: ")
    assert "Traceback" not in err


def test_an_unreadable_source_exits_1_and_prints_nothing(capsys, write, tmp_path):
    good = write("good.txt", f"{CHE_CODE}\n")
    missing = str(tmp_path / "missing.txt")
    code, out, err = run(capsys, good, missing)
    assert code == 1
    assert out == ""
    assert f"imagepuller images: {missing}: cannot read the file" in err
    assert "Traceback" not in err


def test_a_source_over_max_bytes_exits_1(capsys, write):
    path = write("list.txt", f"{CHE_CODE}\n{UDI}\n")
    code, out, err = run(capsys, path, "--max-bytes", "20")
    assert code == 1
    assert out == ""
    assert "IMAGES_FROM_MAX_BYTES" in err


def test_non_utf8_source_exits_1(capsys, write):
    path = write("list.txt", b"quay.io/a/caf\xe9:1\n")
    code, out, err = run(capsys, path)
    assert code == 1
    assert out == ""
    assert "not UTF-8" in err


def test_more_images_than_max_images_exits_1_naming_max_images(capsys, write):
    path = write("list.txt", f"{CHE_CODE}\n{UDI}\n")
    code, out, err = run(capsys, path, "--max-images", "1")
    assert code == 1
    assert out == ""
    assert "(--max-images)" in err
    assert "2 images, more than the limit of 1" in err


def test_max_images_counts_only_added_images(capsys, write):
    path = write("list.txt", f"{CHE_CODE}\n{UDI}\n")
    code, out, _ = run(capsys, path, "--max-images", "2")
    assert code == 0
    merge = f"a=quay.io/a/a:1;b=quay.io/a/b:1;code={CHE_CODE}"
    code, out, _ = run(capsys, path, "--max-images", "1", "--merge", merge)
    assert code == 0
    assert (
        out == f"a=quay.io/a/a:1;b=quay.io/a/b:1;code={CHE_CODE};universal-developer-image={UDI};\n"
    )


def test_a_list_of_only_comments_exits_1(capsys, write):
    path = write("list.txt", "# nothing here\n\n   \n# yet\n")
    code, out, err = run(capsys, path)
    assert code == 1
    assert out == ""
    assert "no image" in err


def test_only_invalid_lines_exits_1_after_reporting_them(capsys, write):
    path = write("list.txt", "BAD\n")
    code, out, err = run(capsys, path)
    assert code == 1
    assert out == ""
    assert f"{path}:1: 'BAD' skipped" in err
    assert "no image" in err


def test_help_of_images(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["images", "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for option in ("SOURCE", "--merge", "--output", "configmap-patch", "--ca-bundle", "--timeout"):
        assert option in out
    assert "--max-images" in out and "--max-bytes" in out


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ([], "SOURCE"),
        (["l.txt", "--max-images", "0"], "--max-images"),
        (["l.txt", "--max-bytes", "-1"], "--max-bytes"),
        (["l.txt", "--timeout", "soon"], "--timeout"),
        (["l.txt", "-o", "json"], "--output"),
    ],
)
def test_usage_errors_exit_2(capsys, args, named):
    with pytest.raises(SystemExit) as caught:
        main(["images", *args])
    assert caught.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert named in captured.err


def test_the_value_is_accepted_by_load_config_and_round_trips(capsys, write):
    references = [
        CHE_CODE,
        UDI,
        IDEA,
        "docker.io/other/che-code:1",
        "quay.io/team/my.tool:1",
        "quay.io/team/" + "long-segment-" * 8 + "end:1",
        "quay.io/team/copy-sleep:1",
        "busybox",
        "quay.io/team/che_theia:1",
    ]
    path = write("list.txt", "\n".join(references))
    code, out, _ = run(capsys, path)
    assert code == 0
    value = out.removesuffix("\n")
    assert "\n" not in value
    config = load_config({"IMAGES": value})
    assert sorted(image.image for image in config.images) == sorted(references)
    assert "copy-sleep" not in {image.name for image in config.images}
    # Round trip: the value made again from the loaded images is the same, and merging the
    # same list into it changes nothing.
    assert "".join(f"{i.name}={i.image};" for i in config.images) == value
    code, again, _ = run(capsys, path, "--merge", value)
    assert code == 0
    assert again == out
    assert config.images == parse_images(value)
    assert all(isinstance(image, CachedImage) for image in config.images)


def test_standard_input(capsys, monkeypatch):
    data = b"\xef\xbb\xbf" + f"{CHE_CODE}\r\nnope nope\r\n".encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, err = run(capsys, "-")
    assert code == 0
    assert out == f"che-code={CHE_CODE};\n"
    assert "imagepuller images: standard input:2: 'nope nope' skipped" in err


@pytest.fixture(scope="module")
def http_server():
    with ListServer() as server:
        yield server


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    with ListServer().with_tls(tmp_path_factory.mktemp("tls")) as server:
        yield server


def test_a_url_source(capsys, http_server, write):
    http_server.files["/devfile/external_images.txt"] = f"{UDI}\n".encode()
    url = http_server.url("/devfile/external_images.txt")
    path = write("plugin.txt", CHE_CODE)
    code, out, _ = run(capsys, url, path, "--timeout", "5s")
    assert code == 0
    assert out == f"che-code={CHE_CODE};universal-developer-image={UDI};\n"


def test_a_url_answering_404_exits_1(capsys, http_server):
    url = http_server.url("/nowhere")
    code, out, err = run(capsys, url)
    # The product leaves the HTTPError's response open (see test_imagelists.py's
    # test_an_http_error_response_is_closed): collect it here, not in a later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert code == 1
    assert out == ""
    assert f"imagepuller images: {url}: the server answered HTTP 404" in err


def test_a_refused_connection_exits_1(capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out, err = run(capsys, f"http://127.0.0.1:{port}/l.txt")
    assert code == 1
    assert out == ""
    assert "cannot connect" in err


def test_https_with_the_ca_bundle_file(capsys, tls_server, write):
    tls_server.files["/l.txt"] = f"{CHE_CODE}\n".encode()
    ca = write("ca.pem", tls_server.ca_pem)
    code, out, _ = run(capsys, tls_server.url("/l.txt"), "--ca-bundle", ca)
    assert code == 0
    assert out == f"che-code={CHE_CODE};\n"


def test_https_without_the_ca_exits_1_naming_the_ca_setting(capsys, tls_server):
    tls_server.files["/l.txt"] = f"{CHE_CODE}\n".encode()
    code, out, err = run(capsys, tls_server.url("/l.txt"))
    assert code == 1
    assert out == ""
    assert "IMAGES_FROM_CA_BUNDLE" in err


def test_a_missing_ca_bundle_is_a_message_not_a_traceback(capsys, http_server, tmp_path):
    http_server.files["/l.txt"] = f"{CHE_CODE}\n".encode()
    missing = str(tmp_path / "no.pem")
    try:  # a usage error (2) or an unusable source (1): either, with a message
        code = main(["images", http_server.url("/l.txt"), "--ca-bundle", missing])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    assert code in (1, 2)
    assert captured.out == ""
    assert re.search(r"no\.pem|ca.bundle", captured.err, re.IGNORECASE)


def test_closed_standard_input_exits_1(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", None)
    code, out, _ = run(capsys, "-")
    assert code == 1
    assert out == ""
