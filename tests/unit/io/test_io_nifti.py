"""NIfTI reading/writing: geometry vs nibabel, typed errors for broken files, limits."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from medssl.errors import (CorruptFileError, GeometryError, InputError, LimitExceededError, NotAScanError,
                           UnsupportedInputError)  # fmt: skip
from medssl.io import ReadLimits, Scan, probe, read_scan, to_canonical, write_scan


def _affine() -> np.ndarray:
    aff = np.diag([-0.8, 0.9, 2.5, 1.0])
    aff[:3, 3] = (30.0, -40.0, 12.0)
    return aff


def _save(path, data, affine=None, *, qform=None, sform=True):
    img = nib.Nifti1Image(data, _affine() if affine is None else affine)
    img.set_sform(img.affine, code=1 if sform else 0)
    img.set_qform(img.affine if qform is None else qform, code=1)
    nib.save(img, str(path))
    return path


def test_matches_nibabel_and_guesses_ct(tmp_path):
    data = np.random.default_rng(0).integers(-1024, 2000, (12, 10, 8)).astype(np.int16)
    path = _save(tmp_path / "ct_case.nii.gz", data)
    scan = read_scan(path)
    np.testing.assert_array_equal(scan.array, data.astype(np.float32))
    np.testing.assert_array_equal(scan.affine, nib.load(path).affine)
    assert scan.modality == "CT" and scan.case_id == "ct_case" and scan.orientation == "LAS"


@pytest.mark.realdata
@pytest.mark.parametrize("rel, modality", [("ct/lung1.nii.gz", "CT"), ("mr/brain1.nii.gz", "MR")])
def test_real_files_match_nibabel(real_data, rel, modality):
    img = nib.load(real_data / rel)
    scan = read_scan(real_data / rel)
    np.testing.assert_array_equal(scan.array, img.get_fdata(dtype=np.float32))
    np.testing.assert_allclose(scan.affine, img.affine, atol=1e-6)
    assert scan.modality == modality


def test_write_roundtrip_keeps_geometry_in_qform_and_sform(tmp_path):
    data = np.random.default_rng(1).normal(size=(9, 8, 7)).astype(np.float32)
    scan = Scan(array=data, affine=_affine(), modality="MR", source="x", case_id="x")
    out = write_scan(scan, tmp_path / "sub" / "out.nii.gz")
    img = nib.load(out)
    for form in (img.header.get_qform(coded=True), img.header.get_sform(coded=True)):
        np.testing.assert_allclose(form[0], _affine(), atol=1e-5)
        assert form[1] == 1
    np.testing.assert_array_equal(read_scan(out).array, data)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["out.nii.gz"]  # no temp file left


def test_integer_valued_volume_is_stored_losslessly_as_int16(tmp_path):
    data = np.arange(-1024, -1024 + 6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)
    out = write_scan(Scan(data, _affine(), "CT", "x", "x"), tmp_path / "a.nii")
    assert nib.load(out).get_data_dtype() == np.int16
    np.testing.assert_array_equal(read_scan(out).array, data)


def test_to_canonical_keeps_world_positions():
    data = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2)
    aff = np.array([[0, 0, -2.0, 5], [-1.0, 0, 0, 6], [0, 3.0, 0, 7], [0, 0, 0, 1]])
    scan = Scan(data, aff, "OT", "x", "x")
    can = to_canonical(scan)
    ref = nib.as_closest_canonical(nib.Nifti1Image(data, aff))
    assert can.orientation == "RAS"
    np.testing.assert_array_equal(can.array, np.asarray(ref.dataobj))
    np.testing.assert_allclose(can.affine, ref.affine)


def test_qform_sform_flip_is_an_error_small_gap_a_warning(tmp_path, caplog):
    data = np.zeros((6, 6, 6), np.int16)
    flipped = _affine() @ np.diag([-1.0, 1, 1, 1])
    with pytest.raises(GeometryError, match="qform .* and sform .* disagree"):
        read_scan(_save(tmp_path / "flip.nii.gz", data, qform=flipped))
    nudged = _affine().copy()
    nudged[0, 3] += 0.01
    scan = read_scan(_save(tmp_path / "nudge.nii.gz", data, qform=nudged))
    assert scan.meta["qform_sform_gap_mm"] == pytest.approx(0.01, abs=1e-4)
    np.testing.assert_allclose(scan.affine, _affine())  # sform wins, as in nibabel
    assert "qform and sform differ" in caplog.text


def test_corrupt_and_truncated_gzip_fail_at_read_time(tmp_path):
    data = np.random.default_rng(2).integers(0, 1000, (20, 20, 20)).astype(np.int16)
    raw = (_save(tmp_path / "ok.nii.gz", data)).read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptFileError, match="cut.nii.gz"):
        read_scan(tmp_path / "cut.nii.gz")
    plain = gzip.decompress(raw)
    bad_crc = gzip.compress(plain)[:-8] + b"\0" * 8  # right data, wrong CRC and length trailer
    (tmp_path / "crc.nii.gz").write_bytes(bad_crc)
    with pytest.raises(CorruptFileError):
        read_scan(tmp_path / "crc.nii.gz")
    (tmp_path / "short.nii").write_bytes(plain[:-50])
    with pytest.raises(CorruptFileError, match="truncated"):
        read_scan(tmp_path / "short.nii")


@pytest.mark.parametrize("shape, match", [((8, 8), "2D image"), ((8, 8, 1), "2D image"), ((6, 6, 6, 3), "4D image")])
def test_2d_and_4d_are_unsupported(tmp_path, shape, match):
    with pytest.raises(UnsupportedInputError, match=match):
        read_scan(_save(tmp_path / "x.nii", np.zeros(shape, np.float32)))


def test_singleton_4th_dim_is_squeezed(tmp_path):
    assert read_scan(_save(tmp_path / "x.nii", np.ones((5, 4, 3, 1), np.float32))).shape == (5, 4, 3)


def test_nan_voxels_are_refused(tmp_path):
    data = np.zeros((5, 5, 5), np.float32)
    data[2, 2, 2] = np.nan
    with pytest.raises(InputError, match="NaN") as info:
        read_scan(_save(tmp_path / "nan.nii.gz", data))
    assert info.value.code == "non_finite"


def test_absurd_header_size_hits_limit_before_allocating(tmp_path):
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((30000, 30000, 30000))
    hdr.set_data_dtype(np.float32)
    hdr.set_data_offset(352)  # a default header says 0, which is itself an error now
    path = tmp_path / "huge.nii"
    path.write_bytes(hdr.binaryblock + b"\0" * 4 + b"\0" * 1000)
    with pytest.raises(LimitExceededError, match="huge.nii"):
        read_scan(path)
    with pytest.raises(LimitExceededError):
        read_scan(_save(tmp_path / "small.nii", np.zeros((8, 8, 8), np.int16)), limits=ReadLimits(max_voxels=100))


@pytest.mark.parametrize("name, content, error", [
    ("text.nii", b"this is a text file, not a scan\n" * 20, NotAScanError),
    ("random.nii.gz", bytes(np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8)), CorruptFileError),
    ("empty.nii.gz", b"", CorruptFileError),
])  # fmt: skip
def test_not_nifti(tmp_path, name, content, error):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(error, match=name.replace(".", r"\.")):
        read_scan(tmp_path / name)


def test_probe_reads_headers_and_guesses_modality(tmp_path):
    ct = np.full((6, 5, 4), -1000, np.int16)
    _save(tmp_path / "case1.nii.gz", ct)
    _save(tmp_path / "case1_label.nii.gz", np.zeros((6, 5, 4), np.uint8))
    (tmp_path / "mr").mkdir()
    _save(tmp_path / "mr" / "t1.nii.gz", np.ones((6, 5, 4), np.int16))
    (tmp_path / "broken.nii.gz").write_bytes(b"not gzip at all")
    (tmp_path / "notes.txt").write_text("ignored")
    found = probe(tmp_path)
    modalities = {s.series_key: s.modality for s in found.series}
    assert modalities == {"case1.nii.gz": "CT", "case1_label.nii.gz": "OT", "mr/t1.nii.gz": "MR"}
    assert found.series[0].spacing == pytest.approx((0.8, 0.9, 2.5)) and found.series[0].shape == (6, 5, 4)
    assert found.failed == [("broken.nii.gz", "corrupt", found.failed[0][2])]
    assert probe(tmp_path / "case1.nii.gz").series[0].format == "nifti"


RGB = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])


@pytest.mark.parametrize("dtype, label", [(RGB, "RGB"), (np.complex64, "complex64")])
def test_colour_and_complex_voxels_are_unsupported_in_read_and_probe(tmp_path, dtype, label):
    path = _save(tmp_path / "x.nii.gz", np.zeros((6, 5, 4), dtype))
    with pytest.raises(UnsupportedInputError, match=f"colour/complex/structured voxel type {label}"):
        read_scan(path)
    assert probe(path).failed == [("x.nii.gz", "unsupported", probe(path).failed[0][2])]
    assert probe(tmp_path).failed[0][:2] == ("x.nii.gz", "unsupported")


def test_sheared_affine_is_written_as_sform_only_and_reads_back(tmp_path):
    sheared = _affine()
    sheared[0, 1] = 0.2 * 0.9  # column j leans along x: no rotation + zooms holds it
    data = np.zeros((40, 40, 4), np.int16)
    out = write_scan(Scan(data, sheared, "CT", "x", "x"), tmp_path / "s.nii.gz")
    assert nib.load(out).header.get_qform(coded=True)[1] == 0
    np.testing.assert_allclose(read_scan(out).affine, sheared, atol=1e-5)
