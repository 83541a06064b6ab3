"""DICOM twin of a phantom: proper CT series, same voxels and geometry as the NIfTI twin."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from medssl.data.phantom import make_phantom
from medssl.data.phantom_io import subject_seed, synth_cohort, write_dicom_series
from tests.dciodvfy import dciodvfy_errors
from tests.sitk_reference import sitk_read_ras


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    synth_cohort(out, 2, fmt="both", seed=5, shape=(24, 20, 12))
    return out


def test_series_headers(cohort):
    files = sorted((cohort / "dicom" / "phantom_001").iterdir())
    assert [f.name for f in files] == [f"IM{k:04d}.dcm" for k in range(12)]
    dss = [pydicom.dcmread(f) for f in files]
    first = dss[0]
    assert first.SOPClassUID == CTImageStorage and first.Modality == "CT"
    assert first.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert str(first.PatientName) == "SYNTHETIC^SUBJECT001"  # not the folder name: ids stay readable
    assert (first.Rows, first.Columns) == (20, 24)
    assert float(first.RescaleSlope) == 1 and float(first.RescaleIntercept) == -1024
    z = [float(ds.ImagePositionPatient[2]) for ds in dss]
    assert z == sorted(z) and len(set(z)) == 12
    assert [ds.InstanceNumber for ds in dss] == list(range(1, 13))
    assert len({ds.SOPInstanceUID for ds in dss}) == 12
    assert len({ds.SeriesInstanceUID for ds in dss}) == 1


def test_series_passes_dciodvfy(cohort):
    first, last = sorted((cohort / "dicom" / "phantom_000").iterdir())[::11]
    assert dciodvfy_errors(first) == [] and dciodvfy_errors(last) == []


def test_uids_deterministic(tmp_path):
    image, _, affine = make_phantom(1, shape=(8, 8, 3))
    a = write_dicom_series(image, affine, tmp_path / "a", seed=9, index=2)
    b = write_dicom_series(image, affine, tmp_path / "b", seed=9, index=2)
    c = write_dicom_series(image, affine, tmp_path / "c", seed=9, index=3)
    uid = lambda p: (pydicom.dcmread(p).SeriesInstanceUID, pydicom.dcmread(p).SOPInstanceUID)  # noqa: E731
    assert uid(a[0]) == uid(b[0]) != uid(c[0])


def _sitk_read(folder):
    pytest.importorskip("SimpleITK")
    return sitk_read_ras(folder)


def test_dicom_twin_equals_nifti_twin_sitk(cohort):
    for i in range(2):
        nii = nib.load(cohort / "nifti" / f"phantom_{i:03d}.nii.gz")
        arr, affine = _sitk_read(cohort / "dicom" / f"phantom_{i:03d}")
        assert np.array_equal(arr, np.asarray(nii.dataobj))
        assert np.abs(affine - nii.affine).max() < 1e-4
        image, _, expected_affine = make_phantom(subject_seed(5, i), shape=(24, 20, 12))
        assert np.array_equal(arr, image)
        assert np.abs(affine - expected_affine).max() < 1e-4


def test_dicom_twin_equals_nifti_twin_read_scan(cohort):
    import medssl.io as io
    for i in range(2):
        nii = io.read_scan(cohort / "nifti" / f"phantom_{i:03d}.nii.gz")
        dcm = io.read_scan(cohort / "dicom" / f"phantom_{i:03d}")
        assert dcm.modality == "CT" and dcm.array.dtype == np.float32
        assert dcm.orientation == nii.orientation == "LPS"  # same stored grid, nothing reoriented
        for a, b in ((dcm, nii), (io.to_canonical(dcm), io.to_canonical(nii))):
            assert np.array_equal(a.array, b.array)
            assert np.abs(a.affine - b.affine).max() < 1e-4
        assert "PHANTOM" not in repr(dcm.meta)  # the fake patient name stays out of metadata
