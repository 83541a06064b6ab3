"""Batch prediction when the output folder cannot be written: a full disk or a read-only
folder stops the run with a typed error (exit 4) naming the file and the OS message; the
cases finished before it keep their records and --continue goes on from there."""

import errno
import os

import pytest

import medssl.atomic as atomic_mod
from medssl.errors import ConfigError
from medssl.inference.batch import BatchOptions, output_write_error, run_batch
from medssl.inference.inputs import collect_inputs
from medssl.inference.predictor import Predictor
from medssl.io import write_nifti
from tests.unit.inference.test_inference_fixtures import grid_affine, sphere_scan, threshold_artifact


@pytest.fixture
def setup(tmp_path):
    model = threshold_artifact(tmp_path / "model.pt", hu_threshold=100.0, roi=(16, 16, 16))
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        scan = sphere_scan(grid_affine((2.0, 2.0, 2.0)), (16, 16, 16), (16.0, 16.0, 16.0), 6.0)
        write_nifti(scan.array, scan.affine, inputs / f"c{i}.nii.gz")
    return Predictor.from_artifact(model, device="cpu"), collect_inputs([inputs]), tmp_path / "out"


def _opts(out, **kw):
    return BatchOptions(output=out, workers=0, progress=False, preview=False, **kw)


@pytest.mark.parametrize("err_no, code, text", [(errno.ENOSPC, "disk_full", "No space left on device"),
                                                (errno.EROFS, "read_only", "Read-only file system")])
def test_output_write_failure_stops_with_a_typed_error(setup, monkeypatch, err_no, code, text):
    predictor, cases, out = setup
    real = os.replace
    calls = {"n": 0}

    def failing(src, dst, *a, **k):
        if str(dst).endswith(".nii.gz"):
            calls["n"] += 1
            if calls["n"] == 2:  # the second case's label map
                raise OSError(err_no, os.strerror(err_no), str(src))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(atomic_mod.os, "replace", failing)
    with pytest.raises(ConfigError) as info:
        run_batch(predictor, cases, _opts(out))
    err = info.value
    assert err.code == code and err.exit_status == 4 and text in str(err) and str(out) in str(err)
    monkeypatch.undo()
    assert (out / "c0.nii.gz").is_file() and not (out / "c1.nii.gz").exists()
    summary = run_batch(predictor, cases, _opts(out, resume=True))
    assert summary.counts["ok"] == 3 and summary.counts["kept"] == 1


def test_input_read_errors_stay_per_case_failures(tmp_path):
    denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "in" / "c1.nii.gz"))
    assert output_write_error(denied, tmp_path / "out") is None
    inside = PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "out" / "results.csv"))
    typed = output_write_error(inside, tmp_path / "out")
    assert typed is not None and typed.code == "read_only" and "results.csv" in str(typed)
    assert output_write_error(OSError(errno.ENOENT, "No such file"), tmp_path) is None
