"""Hostile and broken inputs built from the real files: each root cause of an untyped error,
each once-silent wrong read, the memory budget and position jitter (issue 11, readers)."""

from __future__ import annotations

import gzip
import io
import logging
import shutil
import struct
import tracemalloc
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medssl.errors import (CorruptFileError, GeometryError, LimitExceededError, MedsslError, NotAScanError,
                           UnsupportedInputError)  # fmt: skip
from medssl.io import ReadLimits, probe, read_scan
from tests.conftest import assert_no_phi
from tests.unit.io.io_fuzz_cases import claiming_syntax

pytestmark = pytest.mark.realdata
N = 12  # consecutive real slices: quick to copy and read


@pytest.fixture(scope="module")
def sorted_slices(head_ct_series) -> list[Path]:
    z = {p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2])
         for p in head_ct_series.glob("*.dcm")}  # fmt: skip
    return sorted(z, key=z.get)


@pytest.fixture
def series(tmp_path, sorted_slices) -> Path:
    """N real slices, in position order as files[0] .. files[N-1] (bottom to top)."""
    folder = tmp_path / "series"
    folder.mkdir()
    mid = len(sorted_slices) // 2
    for k, p in enumerate(sorted_slices[mid:mid + N]):
        shutil.copy(p, folder / f"s{k:02d}_{p.name}")
    return folder


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dcm"))


def _edit(path: Path, **values) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)


def _fails(error: type[MedsslError], path: Path, match: str, **kw) -> MedsslError:
    with pytest.raises(error, match=match) as info:
        read_scan(path, **kw)
    assert_no_phi(str(info.value), "error message")
    return info.value


def _patch_element(path: Path, group: int, elem: int, *, vr: bytes | None = None, length: int | None = None):
    data = bytearray(path.read_bytes())
    at = data.find(struct.pack("<HH", group, elem), 132 + 200)
    if vr is not None:
        data[at + 4:at + 6] = vr
    if length is not None:
        data[at + 6:at + 8] = struct.pack("<H", length)
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- root causes of untyped errors
@pytest.mark.parametrize("descriptor, data, match", [
    ([4096, 0, 16], [], "LUTData holds 0 entries"),
    (None, list(range(16)), "LUTDescriptor must hold 3 values"),
    ([0], list(range(16)), "LUTDescriptor must hold 3 values"),
    ([16, 0, 16], list(range(8)), "LUTData holds 8 entries"),
    ([16, 0, 13], [9000] * 16, "up to 13 bits"),
])  # fmt: skip
def test_malformed_modality_lut_is_corrupt(series, descriptor, data, match):
    for path in _files(series):
        ds = pydicom.dcmread(path)
        item = Dataset()
        if descriptor is not None:
            item.add_new(0x00283002, "US", descriptor)
        item.add_new(0x00283006, "US", data)
        ds.ModalityLUTSequence = Sequence([item])
        ds.save_as(path, enforce_file_format=True)
    _fails(CorruptFileError, series, match)


def test_valid_13_bit_modality_lut_reads_exactly(series):
    ref = read_scan(series).array + 1024  # stored values
    table = (np.arange(4096) * 2) % 8192  # 13-bit entries
    for path in _files(series):
        ds = pydicom.dcmread(path)
        item = Dataset()
        item.add_new(0x00283002, "US", [4096, 0, 13])
        item.add_new(0x00283006, "US", table.tolist())
        ds.ModalityLUTSequence = Sequence([item])
        del ds.RescaleSlope, ds.RescaleIntercept
        ds.save_as(path, enforce_file_format=True)
    np.testing.assert_array_equal(read_scan(series).array, table[ref.astype(np.int64)].astype(np.float32))


@pytest.mark.parametrize("vr, length, keyword", [(b"ZZ", None, "Rows"), (None, 3, "Rows"), (b"SQ", None, "Rows"),
                                                 (b"US", None, "RescaleSlope")])  # fmt: skip
def test_lazy_element_errors_are_typed_at_read_time(series, vr, length, keyword):
    tag = {"Rows": (0x0028, 0x0010), "RescaleSlope": (0x0028, 0x1053)}[keyword]
    _patch_element(_files(series)[5], *tag, vr=vr, length=length)
    err = _fails(CorruptFileError, series, "cannot be read")
    assert keyword in str(err) or "malformed" in str(err)
    found = probe(series)  # headers only: the same file is one failure, never an exception
    assert any(name.endswith(_files(series)[5].name) for name, _, _ in found.failed)


def test_undecodable_element_medssl_does_not_use_is_dropped(series):
    ref = read_scan(series)
    _patch_element(_files(series)[5], 0x0008, 0x0020, vr=b"ZZ")  # StudyDate under an unknown VR
    np.testing.assert_array_equal(read_scan(series).array, ref.array)


@pytest.mark.parametrize("syntax", ["1.2.3.4", "1.2.840.10008.1.2\\1.2.840.10008.1.2.1"])
def test_transfer_syntax_that_is_not_one_is_unsupported(series, syntax):
    for path in _files(series):
        path.write_bytes(claiming_syntax(pydicom.dcmread(path), syntax))
    _fails(UnsupportedInputError, series, "TransferSyntaxUID")


def test_folder_nested_a_thousand_levels(tmp_path, sorted_slices):
    deep = leaf = tmp_path / "deep"
    deep.mkdir()
    try:
        for _ in range(1000):  # one level at a time: Path.mkdir(parents=True) itself recurses
            leaf = leaf / "d"
            leaf.mkdir()
        shutil.copy(sorted_slices[0], leaf / "x.dcm")
        _fails(LimitExceededError, deep, "nested more than 64 levels")
        with pytest.raises(LimitExceededError):
            probe(deep)
    finally:  # bottom up: shutil.rmtree (and so pytest's clean-up of old runs) recurses too
        (leaf / "x.dcm").unlink(missing_ok=True)
        while leaf != deep:
            leaf.rmdir()
            leaf = leaf.parent


def _nifti(real_data: Path, tmp_path: Path, edit, name: str = "case.nii") -> Path:
    """The real brain MR with its header edited as stored (nibabel would "fix" some edits)."""
    raw = bytearray(gzip.open(real_data / "mr" / "brain1.nii.gz").read())
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw[:348])), check=False)
    edit(hdr)
    raw[:348] = hdr.binaryblock
    path = tmp_path / name
    path.write_bytes(gzip.compress(bytes(raw), 1) if name.endswith(".gz") else bytes(raw))
    return path


def _set(field, value, index=None):
    def edit(hdr):
        if index is None:
            hdr.structarr[field] = value
        else:
            arr = hdr.structarr[field].copy()
            arr[index] = value
            hdr.structarr[field] = arr
    return edit


@pytest.mark.parametrize("edit, match", [
    (_set("srow_x", np.nan, 0), "sform is singular or not finite"),
    (_set("srow_y", np.inf, 3), "sform is singular or not finite"),
    (_set("srow_x", 0.0, 0), "sform is singular or not finite"),
    (_set("quatern_b", 2.0), "qform is invalid"),
    (_set("qoffset_x", np.nan), "qform is invalid"),
    (_set("sform_code", -1), "sform_code -1 is not a valid"),
])  # fmt: skip
def test_broken_nifti_affines_are_geometry_errors(real_data, tmp_path, edit, match):
    _fails(GeometryError, _nifti(real_data, tmp_path, edit, "case.nii.gz"), match)


@pytest.mark.parametrize("offset", [np.inf, 1e20, -1.0, np.nan, 0.0, 100.0, 348.0])
def test_bad_vox_offset_is_corrupt_never_header_bytes_as_voxels(real_data, tmp_path, offset):
    _fails(CorruptFileError, _nifti(real_data, tmp_path, _set("vox_offset", offset)), "vox_offset")


def test_nifti_scaling_is_applied_as_nibabel_does(real_data, tmp_path):
    path = _nifti(real_data, tmp_path, lambda hdr: hdr.set_slope_inter(0.5, -100.0), "scaled.nii.gz")
    np.testing.assert_array_equal(read_scan(path).array, nib.load(path).get_fdata(dtype=np.float32))
    assert read_scan(path).array.min() == -100.0


def test_rows_columns_4000_fail_before_allocating(series):
    for path in _files(series):
        _edit(path, Rows=4000, Columns=4000)
    tracemalloc.start()
    try:
        _fails(CorruptFileError, series, "pixel data is truncated")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 1024**2  # the 4000 x 4000 x N volume (N x 64 MB) was never allocated


# ---------------------------------------------------------------- once-silent wrong reads
@pytest.mark.parametrize("values, match", [({"Columns": 255}, "Rows, Columns or BitsAllocated is wrong"),
                                           ({"Rows": 255}, "Rows, Columns or BitsAllocated is wrong"),
                                           ({"BitsStored": 8, "HighBit": 7}, "do not fit BitsStored 8")])  # fmt: skip
def test_header_that_contradicts_the_pixels_is_corrupt(series, values, match):
    for path in _files(series):
        _edit(path, **values)
    _fails(CorruptFileError, series, match)


@pytest.mark.parametrize("what, match", [("spacing", "PixelSpacing of 1e.09 mm"), ("km", "slice step of 1.5e.06 mm"),
                                         ("um", "slice step of 0.0015 mm")])  # fmt: skip
def test_implausible_dicom_geometry_names_the_value(series, what, match):
    for k, path in enumerate(_files(series)):
        if what == "spacing":
            _edit(path, PixelSpacing=[1e9, 1e9])
        else:
            _edit(path, ImagePositionPatient=[0.0, 0.0, k * (1.5e6 if what == "km" else 0.0015)])
    _fails(GeometryError, series, match)
    wide = ReadLimits(min_spacing_mm=1e-4, max_spacing_mm=1e10, max_extent_mm=1e13)
    assert read_scan(series, limits=wide).shape[2] == N


@pytest.mark.parametrize("edit, match", [
    (_set("pixdim", 0.0, 1), r"pixdim\[1\] is 0"),
    (_set("pixdim", -0.78125, 2), r"pixdim\[2\] is -0.78"),
    (_set("pixdim", 1e30, 3), r"pixdim\[3\] .*|spacing along axis 2 is 1e\+30"),
])  # fmt: skip
def test_nifti_pixdim_as_strict_as_dicom(real_data, tmp_path, edit, match):
    def qform_only(hdr):
        edit(hdr)
        hdr.structarr["sform_code"] = 0
    _fails(GeometryError, _nifti(real_data, tmp_path, qform_only), match)


def test_nifti_sform_scaled_1e12_is_implausible(real_data, tmp_path):
    def scaled(hdr):
        hdr.structarr["srow_x"] = hdr.structarr["srow_x"] * np.float32(1e12)
        hdr.structarr["qform_code"] = 0
    _fails(GeometryError, _nifti(real_data, tmp_path, scaled), "spacing along axis 0 is .*e\\+11 mm")


@pytest.mark.parametrize("which", [0, -1])
def test_corrupt_first_or_last_slice_is_an_error_unless_skipping_is_asked(series, which):
    victim = _files(series)[which]
    victim.write_bytes(victim.read_bytes()[:300])
    _fails(CorruptFileError, series, "1 file.* cannot be read")
    scan = read_scan(series, limits=ReadLimits(skip_corrupt_slices=True))
    assert scan.shape[2] == N - 1 and scan.meta["n_unreadable_files"] == 1


def test_damaged_preamble_of_a_dcm_file_is_not_a_stray_file(series):
    victim = _files(series)[-1]
    data = bytearray(victim.read_bytes())
    data[128:132] = b"XXXX"
    victim.write_bytes(bytes(data))
    _fails(CorruptFileError, series, "cannot be read")


def test_top_slice_under_another_series_uid_is_not_dropped_silently(series):
    _edit(_files(series)[-1], SeriesInstanceUID="1.2.826.0.1.3680043.8.498.1")
    _fails(GeometryError, series, "one stack split by a wrong SeriesInstanceUID")
    from medssl.io import uid_hash
    picked = read_scan(series, series_uid=uid_hash(str(pydicom.dcmread(_files(series)[0]).SeriesInstanceUID)))
    assert picked.shape[2] == N - 1  # asked for by UID: read as asked


def test_series_shorter_than_its_images_in_acquisition(series):
    for path in _files(series):
        _edit(path, ImagesInAcquisition=N + 1)
    _fails(GeometryError, series, f"ImagesInAcquisition says {N + 1}, found {N}")


def test_series_shorter_than_its_instance_number_range_even_when_uneven(series):
    _files(series)[6].unlink()
    path = _files(series)[6]  # the next slice moves a little: positions alone no longer say "missing"
    ds = pydicom.dcmread(path)
    ds.ImagePositionPatient = [0.0, 0.0, float(ds.ImagePositionPatient[2]) - 0.8]
    ds.save_as(path, enforce_file_format=True)
    err = _fails(GeometryError, series, "missing slices|spacing varies")
    with pytest.raises(GeometryError, match="InstanceNumber runs"):
        read_scan(series, allow_resample=True)  # never interpolated across a missing slice
    assert err.code == "geometry"


def test_a_lost_first_slice_leaves_a_warning_and_a_whole_series_none(series, caplog):
    for k, path in enumerate(_files(series)):
        _edit(path, InstanceNumber=k + 1)
    with caplog.at_level(logging.WARNING, logger="medssl"):
        read_scan(series)
    assert "InstanceNumber starts" not in caplog.text
    _files(series)[0].unlink()  # nothing else in the headers says it is gone
    with caplog.at_level(logging.WARNING, logger="medssl"):
        assert read_scan(series).shape[2] == N - 1
    assert "InstanceNumber starts at 2, not 1" in caplog.text
    assert_no_phi(caplog.text, "log")


# ---------------------------------------------------------------- memory budget
def test_memory_budget_names_the_limit_and_how_to_raise_it(real_data, series, tmp_path):
    small = ReadLimits(max_bytes=2 * 1024**2)  # the 12-slice series needs 3 MB as float32
    err = _fails(LimitExceededError, real_data / "ct" / "lung1.nii.gz", "ReadLimits.max_bytes", limits=small)
    assert "MEDSSL_READ_MAX_BYTES" in str(err)
    _fails(LimitExceededError, series, "ReadLimits.max_bytes", limits=small)
    archive = tmp_path / "s.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in _files(series):
            zf.write(p, p.name)
    _fails(LimitExceededError, archive, "ReadLimits.max_bytes", limits=small)
    assert read_scan(archive).shape == (256, 256, N)


def test_valid_nifti_bomb_is_refused_from_its_header(tmp_path):
    img = nib.Nifti1Image(np.zeros((1024, 1024, 512), np.int16), np.eye(4))  # 1 GiB of zeros, ~1 MB gzipped
    path = tmp_path / "bomb.nii.gz"
    hdr = img.header
    hdr.set_data_offset(352)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(hdr.binaryblock + b"\0" * 4)
        zeros = bytes(64 * 1024**2)
        for _ in range(16):
            f.write(zeros)
    tracemalloc.start()
    try:
        _fails(LimitExceededError, path, "needs about 2.00 GiB", limits=ReadLimits(max_bytes=1024**3))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024**2


def test_zip_of_many_members_is_read_lazily(tmp_path):
    archive = tmp_path / "many.zip"
    member = bytes(1024 * 1024)  # exactly 1 MiB: exempt from the ratio check
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(200):
            zf.writestr(f"m{i:04d}.dcm", member)
    tracemalloc.start()
    try:
        _fails(NotAScanError, archive, "no readable DICOM image")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 30 * 1024**2  # the old reader held all 200 MiB


# ---------------------------------------------------------------- jitter vs real gaps
def test_position_jitter_reads_and_real_gaps_are_refused(series):
    ref = read_scan(series)
    rng = np.random.default_rng(0)
    for path in _files(series):
        ds = pydicom.dcmread(path)
        pos = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [pos[0], pos[1], pos[2] + float(rng.uniform(-0.02, 0.02))]
        ds.save_as(path, enforce_file_format=True)
    jittered = read_scan(series)
    np.testing.assert_array_equal(jittered.array, ref.array)
    assert jittered.spacing[2] == pytest.approx(1.5, abs=0.01)
    path = _files(series)[4]
    ds = pydicom.dcmread(path)
    ds.ImagePositionPatient = [0.0, 0.0, float(ds.ImagePositionPatient[2]) + 0.3]  # 20 % of a step off the line
    ds.save_as(path, enforce_file_format=True)
    _fails(GeometryError, series, "spacing varies")
    _files(series)[8].unlink()
    _fails(GeometryError, series, "missing slices")


def test_out_of_memory_is_a_limit_error_not_an_internal_one(real_data, monkeypatch):
    class NoMemory:  # numpy as medssl.io.limits sees it, out of memory (numpy itself untouched)
        def __getattr__(self, name):
            return getattr(np, name)

        def empty(self, *args, **kwargs):
            raise MemoryError

    monkeypatch.setattr("medssl.io.limits.np", NoMemory())
    _fails(LimitExceededError, real_data / "ct" / "lung1.nii.gz", "not enough free memory")


def test_read_limits_from_the_environment_and_bounds_checked(monkeypatch):
    monkeypatch.setenv("MEDSSL_READ_MAX_BYTES", "16G")
    monkeypatch.setenv("MEDSSL_SKIP_CORRUPT_SLICES", "1")
    limits = ReadLimits()
    assert limits.max_bytes == 16 * 1024**3 and limits.skip_corrupt_slices
    monkeypatch.setenv("MEDSSL_READ_MAX_BYTES", "nonsense")
    assert ReadLimits().max_bytes == 8 * 1024**3
    with pytest.raises(ValueError, match="min_spacing_mm"):
        ReadLimits(min_spacing_mm=5, max_spacing_mm=1)


def test_read_limits_refuse_nonsense_and_keep_whole_numbers_whole():
    assert ReadLimits(max_files=10.0).max_files == 10 and isinstance(ReadLimits(max_files=10.0).max_files, int)
    for bad, match in [({"max_files": 0}, "positive"), ({"max_files": 1.5}, "whole"), ({"max_ratio": 1}, "above 1"),
                       ({"skip_corrupt_slices": "yes"}, "true or false"), ({"max_bytes": "8G"}, "positive")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            ReadLimits(**bad)


def test_spacings_each_plausible_but_a_volume_kilometres_long_is_geometry(series, real_data, tmp_path):
    """PixelSpacing 0.02 x 90 mm passes the per-spacing bounds, but 256 columns of 90 mm span
    23 m; a NIfTI with 50 mm voxels over 256 columns spans 12.8 m. Longer than any patient."""
    for path in _files(series):
        _edit(path, PixelSpacing=[0.02, 90])
    _fails(GeometryError, series, "span 23 m")

    def wide(hdr):
        affine = hdr.get_best_affine()
        affine[:3, 0] *= 50.0 / np.linalg.norm(affine[:3, 0])
        hdr.set_sform(affine, code=1)
        hdr.set_qform(affine, code=1)

    _fails(GeometryError, _nifti(real_data, tmp_path, wide, "wide.nii"), "span 12.8 m")
    assert read_scan(series, limits=ReadLimits(max_extent_mm=30_000)).shape[:2] == (256, 256)
