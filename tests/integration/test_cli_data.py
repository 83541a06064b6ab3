"""`medssl data synth` and `medssl data index` end to end through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest

from medssl.data.phantom import LABELS

pytestmark = pytest.mark.integration


def medssl(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "medssl", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_synth_layout_and_determinism(tmp_path):
    out = tmp_path / "D"
    res = medssl("data", "synth", "--out", str(out), "--n", "3", "--format", "both", "--seed", "4",
                 "--shape", "16", "16", "8")
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "labels.json").read_text()) == LABELS
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["numTraining"] == 3 and dataset["modality"] == {"0": "CT"} and dataset["labels"] == LABELS
    assert dataset["training"][2] == {"image": "nifti/phantom_002.nii.gz", "label": "nifti/phantom_002_label.nii.gz"}
    for i in range(3):
        assert nib.load(out / "nifti" / f"phantom_{i:03d}.nii.gz").shape == (16, 16, 8)
        assert nib.load(out / "nifti" / f"phantom_{i:03d}_label.nii.gz").get_data_dtype() == np.uint8
        assert sorted(p.name for p in (out / "dicom" / f"phantom_{i:03d}").iterdir()) == [
            f"IM{k:04d}.dcm" for k in range(8)]

    # subject i does not depend on the cohort size
    small = tmp_path / "E"
    assert medssl("data", "synth", "--out", str(small), "--n", "2", "--format", "nifti", "--seed", "4",
                  "--shape", "16", "16", "8").returncode == 0
    a = nib.load(out / "nifti" / "phantom_001.nii.gz")
    b = nib.load(small / "nifti" / "phantom_001.nii.gz")
    assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj)) and np.allclose(a.affine, b.affine)
    assert not (small / "dicom").exists()


def test_synth_rejects_bad_arguments(tmp_path):
    res = medssl("data", "synth", "--out", str(tmp_path / "x"), "--n", "0")
    assert res.returncode == 4 and "error [config]" in res.stderr and "Traceback" not in res.stderr
    res = medssl("data", "synth", "--out", str(tmp_path / "x"), "--format", "png")
    assert res.returncode == 2


def test_index_cohort_with_three_broken_files(tmp_path):
    root = tmp_path / "D"
    assert medssl("data", "synth", "--out", str(root), "--n", "4", "--format", "both",
                  "--shape", "16", "16", "8").returncode == 0
    (root / "broken.nii.gz").write_bytes(os.urandom(4096))
    (root / "empty").mkdir()
    (root / "empty" / "IM0000.dcm").write_bytes(b"")
    (root / "notes.nii").write_text("this is text\n")
    manifest = tmp_path / "manifest.jsonl"

    res = medssl("data", "index", str(root), "--out", str(manifest))
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 3 and all(r["reason"] and r["code"] for r in failed)
    assert sorted(r["path"] for r in failed) == ["broken.nii.gz", "empty/IM0000.dcm", "notes.nii"]
    ok = {(r["path"], r["kind"]) for r in rows if r["status"] == "ok"}
    assert {f"dicom/phantom_{i:03d}" for i in range(4)} <= {p for p, k in ok if k == "dicom"}
    assert len([p for p, k in ok if k == "nifti"]) == 8
    assert "12 ok, 3 failed" in res.stderr

    res = medssl("data", "index", str(root), "--out", str(manifest), "--strict")
    assert res.returncode == 6 and "probed 0, unchanged 15" in res.stderr


def test_synth_default_cohort_timing(tmp_path):
    """Sanity run of the documented command; the time is printed, not asserted."""
    start = time.perf_counter()
    res = medssl("data", "synth", "--out", str(tmp_path / "D"), "--n", "20", "--format", "both")
    elapsed = time.perf_counter() - start
    assert res.returncode == 0, res.stderr
    print(f"medssl data synth --n 20 --format both: {elapsed:.1f} s")
    assert len(list((tmp_path / "D" / "dicom").iterdir())) == 20
