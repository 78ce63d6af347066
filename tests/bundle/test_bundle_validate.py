"""The OLM bundle passes operator-framework's own validators (github.com/operator-framework/api
v0.9.1, built once by hack/build-bundle-validate.sh), and a broken bundle does not."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def validator() -> Path:
    built = subprocess.run(
        ["bash", str(ROOT / "hack" / "build-bundle-validate.sh")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, f"building the bundle validator failed:\n{built.stderr}"
    return Path(built.stdout.strip())


def validate(validator: Path, bundle: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(validator), str(bundle)], capture_output=True, text=True, timeout=120
    )


def test_the_bundle_passes_the_operator_framework_validators(validator):
    result = validate(validator, ROOT / "bundle")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 error(s)" in result.stdout


def test_a_bundle_with_a_broken_csv_fails_them(validator, tmp_path):
    broken = tmp_path / "bundle"
    shutil.copytree(ROOT / "bundle", broken)
    csv = broken / "manifests" / "imagepuller-operator.clusterserviceversion.yaml"
    # An owned CRD the bundle does not ship: OLM could not install it.
    csv.write_text(
        csv.read_text().replace(
            "name: kubernetesimagepullers.che.eclipse.org",
            "name: kubernetesimagepullers.example.com",
            1,
        )
    )
    result = validate(validator, broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ERROR" in result.stdout
