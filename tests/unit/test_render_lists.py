"""`render` and `check` with IMAGES_FROM: the lists are read as the controller would read them."""

from __future__ import annotations

import yaml

from imagepuller.cli import main
from tests.listserver import ListServer

LIST = b"quay.io/che-incubator/che-code:latest\nnot a reference\n"


def test_render_adds_the_lists_images_after_images(capsys):
    with ListServer({"/list.txt": LIST}) as server:
        env = {"IMAGES": "mine=quay.io/me/tools:1;", "IMAGES_FROM": server.url("/list.txt")}
        assert main(["render"], env) == 0
    out, err = capsys.readouterr()
    spec = yaml.safe_load(out)["spec"]["template"]["spec"]
    assert [(c["name"], c["image"]) for c in spec["containers"]] == [
        ("mine", "quay.io/me/tools:1"),
        ("che-code", "quay.io/che-incubator/che-code:latest"),
    ]
    assert "list.txt:2: 'not a reference' skipped" in err  # on stderr, never in the YAML


def test_render_with_a_list_that_cannot_be_read_prints_nothing_and_exits_1(capsys):
    with ListServer({}) as server:
        env = {"IMAGES": "mine=quay.io/me/tools:1;", "IMAGES_FROM": server.url("/gone.txt")}
        assert main(["render"], env) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "HTTP 404" in err and "nothing rendered" in err


def test_check_names_the_lists_without_reading_them(capsys):
    env = {"IMAGES_FROM": "https://devspaces.example.com/plugin-registry/v3/external_images.txt"}
    assert main(["check"], env) == 0
    out = capsys.readouterr().out
    assert "images (0)" in out
    assert "IMAGES_FROM" in out and "plugin-registry/v3/external_images.txt" in out
