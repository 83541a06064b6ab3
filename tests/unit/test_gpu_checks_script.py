"""benchmarks/gpu_checks.sh is run on a lent GPU machine only; here we check, without a GPU,
that it parses, fails loudly, fits one 8-minute call and names scripts that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_checks.sh"


def _code_lines() -> list[str]:
    return [line for line in SCRIPT.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_script_fails_loudly_and_writes_to_out():
    code = "\n".join(_code_lines())
    assert "set -euo pipefail" in code
    assert "|| true" not in code
    assert '"$OUT/gpu_checks.jsonl"' in code
    assert 'exit "$failed"' in code


def test_script_uses_python3_and_installs_offline():
    code = "\n".join(_code_lines())
    assert "PY=python3" in code
    assert not re.search(r"(^|\s)python\s", code), "the device machine may have no plain `python`"
    assert "--no-index --no-deps" in code
    assert "-e ." not in code, "an editable install needs setuptools from the network"
    assert "PYTHONPATH=" in code


def test_timeouts_fit_one_call():
    limits = [int(m) for m in re.findall(r"\btimeout (\d+)", "\n".join(_code_lines()))]
    limits += [int(m) for m in re.findall(r"^check \S+ (\d+)", "\n".join(_code_lines()), re.M)]
    assert limits and sum(limits) <= 480, limits


def test_named_scripts_and_tests_exist():
    code = "\n".join(_code_lines())
    for path in re.findall(r"\b((?:benchmarks|tests)/[\w/]+(?:\.py)?)", code):
        assert (REPO / path).exists(), path


def test_wheel_list_covers_what_the_device_lacks():
    make = (REPO / "Makefile").read_text()
    wheels = make[make.index("GPU_WHEELS :="):make.index("GPU_PLATFORMS")]
    for name in ("monai", "pydicom", "nibabel", "pydantic", "pydantic_core", "highdicom", "pylibjpeg", "pyjpegls"):
        assert f"{name}==" in wheels, name
    assert "/.whl/" in (REPO / ".gitignore").read_text()
