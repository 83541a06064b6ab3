"""Runs dciodvfy (Debian dicom3tools, installed by .ci/run) on a DICOM file.

Without dciodvfy the calling test is skipped, except under CI (``CI`` set to anything but
``false`` / ``0``), where a missing validator is a failure: CI must really validate."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def _require() -> str:
    exe = shutil.which("dciodvfy")
    if exe is None:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail("dciodvfy not found under CI: install Debian's dicom3tools (.ci/run does)")
        pytest.skip("dciodvfy not found (apt-get install --no-install-recommends dicom3tools)")
    return exe


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines dciodvfy prints for ``path`` (warnings are left out)."""
    proc = subprocess.run([_require(), str(path)], capture_output=True, text=True, timeout=120)
    lines = (proc.stdout + proc.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]
