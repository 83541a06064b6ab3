"""`medssl inspect` / `medssl convert` end to end on the real head CT series: values checked
against SimpleITK, broken inputs give one typed error line, the planted patient never leaks."""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medssl.cli import main
from medssl.io import read_scan
from tests.conftest import SENTINEL_TEXTS, assert_no_phi
from tests.sitk_reference import sitk_read_ras

pytestmark = [pytest.mark.integration, pytest.mark.realdata]


def _cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "medssl", *argv], capture_output=True, text=True, env=env, timeout=120)


def test_inspect_json_real_series(head_ct_series):
    proc = _cli("inspect", str(head_ct_series), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["shape"] == [256, 256, 108] and info["modality"] == "CT"
    assert info["spacing_mm"] == pytest.approx([0.957, 0.957, 1.5], abs=5e-4)
    assert (info["intensity"]["min"], info["intensity"]["max"]) == (-1024.0, 2986.0)
    assert info["orientation"] == "LPS" and info["series"][0]["selected"]
    assert_no_phi(proc.stdout + proc.stderr, "inspect output")
    assert "phi" not in info


def test_show_phi_reveals_the_patient(head_ct_series, capsys):
    assert main(["inspect", str(head_ct_series), "--show-phi"]) == 0
    assert "SENTINEL^PHI^DONOTLEAK" in capsys.readouterr().out


def test_convert_matches_simpleitk_and_leaks_nothing(head_ct_series, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "head.nii.gz"
    assert main(["convert", str(head_ct_series), str(out)]) == 0
    ours = nib.as_closest_canonical(nib.load(out))
    ref_array, ref_affine = sitk_read_ras(head_ct_series)
    ref = nib.as_closest_canonical(nib.Nifti1Image(ref_array.astype(np.float32), ref_affine))
    np.testing.assert_array_equal(np.asarray(ours.dataobj), np.asarray(ref.dataobj))
    np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-3)
    captured = capsys.readouterr()
    assert_no_phi(captured.out + captured.err + caplog.text, "convert output and logs")
    assert_no_phi(" ".join(p.name for p in tmp_path.rglob("*")), "file names")
    payload = gzip.decompress(out.read_bytes())
    assert not any(s.encode() in payload for s in SENTINEL_TEXTS)


def test_zip_of_real_series_equals_folder(head_ct_series, tmp_path):
    archive = tmp_path / "head.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(head_ct_series.iterdir()):
            zf.write(path, f"head/{path.name}")
    a, b = read_scan(archive), read_scan(head_ct_series)
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_array_equal(a.affine, b.affine)


def _broken_inputs(series, tmp_path):
    """name -> path of each broken input, built from the real series."""
    def z(path):
        return float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2])

    by_z = sorted(series.iterdir(), key=z)
    missing = tmp_path / "missing_slice"
    missing.mkdir()
    for path in by_z[:54] + by_z[55:]:
        shutil.copy(path, missing / path.name)
    truncated = tmp_path / "truncated_file"
    truncated.mkdir()
    for path in by_z[40:46]:
        shutil.copy(path, truncated / path.name)
    victim = truncated / by_z[42].name
    victim.write_bytes(victim.read_bytes()[:60_000])
    (tmp_path / "zero.dcm").write_bytes(b"")
    noise = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    (tmp_path / "random.dcm").write_bytes(noise)
    (tmp_path / "random.nii.gz").write_bytes(noise)
    (tmp_path / "text.nii").write_text("patient notes are not a scan\n" * 10)
    return {
        "missing_slice": (missing, r"\[geometry\].*expected 108 .* found 107"),
        "truncated_file": (truncated, r"\[corrupt\].*truncated"),
        "zero.dcm": (tmp_path / "zero.dcm", r"\[corrupt\].*empty"),
        "random.dcm": (tmp_path / "random.dcm", r"\[not_a_scan\]"),
        "random.nii.gz": (tmp_path / "random.nii.gz", r"\[corrupt\]"),
        "text.nii": (tmp_path / "text.nii", r"\[not_a_scan\]"),
    }


def test_broken_inputs_give_one_typed_line(head_ct_series, tmp_path, capsys, caplog):
    import re

    cases = _broken_inputs(head_ct_series, tmp_path)
    for name, (path, pattern) in cases.items():
        for argv in (["inspect", str(path)], ["convert", str(path), str(tmp_path / "out.nii.gz")]):
            rc = main(argv)
            err = capsys.readouterr()
            assert rc == 3, (name, err.err)
            lines = err.err.strip().splitlines()
            assert 1 <= len(lines) <= 3 and "Traceback" not in err.err, (name, err.err)
            assert re.search(pattern, lines[-1]), (name, lines[-1])
            assert_no_phi(err.out + err.err + caplog.text, f"{name} output")
    assert not (tmp_path / "out.nii.gz").exists()
    proc = _cli("convert", str(cases["missing_slice"][0]), str(tmp_path / "out.nii.gz"))  # as a newcomer runs it
    assert proc.returncode == 3 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert_no_phi(proc.stdout + proc.stderr, "subprocess output")
