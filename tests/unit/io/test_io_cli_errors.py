"""Every CLI error on a bad scan is one line on stderr and exit 3, whatever the libraries
(nibabel's log lines, numpy's RuntimeWarnings) or medssl's own INFO lines would have said."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.conftest import REPO, assert_no_phi

pytestmark = pytest.mark.realdata

# One interpreter for every case (a start costs seconds); logging is configured once, as in
# a real run, and each case's output is framed by markers.
RUNNER = """
import json, sys
from medssl.cli import main
for path in json.loads(sys.argv[1]):
    print("@@start", file=sys.stderr, flush=True)
    status = main(["inspect", path])
    sys.stderr.flush(); sys.stdout.flush()
    print(f"@@end {status}", file=sys.stderr, flush=True)
"""


def _nifti(real_data: Path, target: Path, field: str, value) -> Path:
    raw = bytearray(gzip.open(real_data / "mr" / "brain1.nii.gz").read())
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw[:348])), check=False)
    hdr.structarr[field] = value
    raw[:348] = hdr.binaryblock
    target.write_bytes(bytes(raw))
    return target


def _series(head_ct_series: Path, target: Path, n: int = 6) -> list[Path]:
    target.mkdir()
    files = sorted(head_ct_series.glob("*.dcm"))[:n]
    for p in files:
        shutil.copy(p, target / p.name)
    return sorted(target.glob("*.dcm"))


def test_each_bad_scan_gives_one_line_and_exit_3(real_data, head_ct_series, tmp_path):
    cases = []
    # INFO "skipped series" lines and a WARNING about unreadable files used to precede this.
    mixed = tmp_path / "mixed"
    files = _series(head_ct_series, mixed)
    shutil.copy(get_testdata_file("test-SR.dcm"), mixed / "report.dcm")
    files[0].write_bytes(files[0].read_bytes()[:2000])
    cases.append(mixed)
    # nibabel logged its silent fixes ("setting to 0", "setting to minimum value of 352").
    cases.append(_nifti(real_data, tmp_path / "sform_code.nii", "sform_code", -1))
    cases.append(_nifti(real_data, tmp_path / "vox_offset.nii", "vox_offset", 100))
    cases.append(_nifti(real_data, tmp_path / "scl_slope.nii", "scl_slope", 1e38))
    # numpy printed "RuntimeWarning: overflow encountered" quoting a medssl source line.
    slope = tmp_path / "slope"
    for p in _series(head_ct_series, slope):
        ds = pydicom.dcmread(p)
        ds.RescaleSlope = "1e308"
        ds.save_as(p, enforce_file_format=True)
    cases.append(slope)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps([str(c) for c in cases])], capture_output=True,
                          text=True, env=env, timeout=300, cwd=tmp_path)  # fmt: skip
    assert proc.stdout.strip() == ""
    blocks = proc.stderr.split("@@start")[1:]
    assert len(blocks) == len(cases), proc.stderr[-2000:]
    for case, block in zip(cases, blocks):
        body, _, status = block.rpartition("@@end")
        lines = [line for line in body.splitlines() if line.strip()]
        assert status.strip() == "3", f"{case.name}: exit {status.strip()}: {body}"
        assert len(lines) == 1 and lines[0].startswith("medssl: error ["), f"{case.name}: {lines}"
        assert_no_phi(body, f"CLI error for {case.name}")
