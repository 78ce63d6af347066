"""The real-node tests skip where a kubelet cannot run, with the reason, but never under CI."""

from __future__ import annotations

import pytest

from tests.realnode import conftest as realnode


def test_not_root_is_named_and_skips(monkeypatch):
    monkeypatch.setattr(realnode.os, "geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    assert any("root" in reason for reason in realnode.missing_prerequisites())
    with pytest.raises(pytest.skip.Exception, match="real nodes need root"):
        realnode._require_real_nodes()


def test_under_ci_a_missing_prerequisite_fails_instead_of_skipping(monkeypatch):
    monkeypatch.setattr(realnode.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        realnode._require_real_nodes()


def test_nothing_missing_neither_skips_nor_fails(monkeypatch):
    monkeypatch.setattr(realnode, "missing_prerequisites", lambda: [])
    monkeypatch.setenv("CI", "true")
    realnode._require_real_nodes()  # returns
