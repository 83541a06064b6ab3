"""DICOM series reading: geometry against hand math from the headers, HU, validation."""

from __future__ import annotations

import io
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataelem import DataElement

from medssl.errors import (CorruptFileError, DecoderMissingError, GeometryError, InputError, LimitExceededError,
                           NotAScanError,
                           UnsupportedInputError)  # fmt: skip
from medssl.io import ReadLimits, probe, read_dicom_datasets, read_scan, read_scan_and_datasets, uid_hash
from medssl.io.dicom_headers import READ_ELEMENTS
from medssl.io.dicom_pixels import _modality_lut, slice_pixels
from medssl.io.dicom_reader import read_dicom_series
from tests.unit.io.test_io_helpers import make_dataset, make_series

PYDICOM_FILES = Path(os.path.dirname(get_testdata_file("CT_small.dcm")))
CT5N = PYDICOM_FILES / "dicomdirtests/98892001/CT5N"


def _world(affine: np.ndarray, ijk) -> np.ndarray:
    return (affine @ np.array([*ijk, 1.0]))[:3]


def test_ct5n_matches_hand_math_from_headers():
    scan = read_scan(CT5N)
    files = [pydicom.dcmread(p) for p in sorted(CT5N.iterdir())]
    assert scan.shape == (16, 16, 5) and scan.modality == "CT"
    # k follows ImagePositionPatient along the normal (+z here), not file names.
    files.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    for k, ds in enumerate(files):
        hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(scan.array[:, :, k], hu.T)
        r, c = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
        i, j = 3, 11
        row_mm, col_mm = float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1])
        lps = np.array(ds.ImagePositionPatient, float) + i * col_mm * r + j * row_mm * c
        np.testing.assert_allclose(_world(scan.affine, (i, j, k)), lps * [-1, -1, 1], atol=1e-4)
    assert scan.orientation == "LPS"
    np.testing.assert_allclose(scan.spacing, (0.488281, 0.488281, 2.5), atol=1e-5)


def test_oblique_non_square_series_and_per_slice_rescale(tmp_path):
    iop = (0.8, 0.6, 0.0, 0.0, 0.0, -1.0)  # oblique coronal
    slopes, intercepts = [1.0, 0.5, 2.0, 1.0, 0.25], [-1024.0, -1000.0, -2048.0, 0.0, 10.5]
    stored = make_series(tmp_path / "s", 5, rows=7, cols=9, iop=iop, spacing=(0.6, 0.9), step=3.0,
                         slopes=slopes, intercepts=intercepts)  # fmt: skip
    scan = read_scan(tmp_path / "s")
    assert scan.shape == (9, 7, 5) and scan.array.dtype == np.float32
    for k in range(5):
        np.testing.assert_array_equal(scan.array[:, :, k], (stored[k] * slopes[k] + intercepts[k]).T.astype(np.float32))
    r, c = np.array(iop[:3]), np.array(iop[3:])
    n = np.cross(r, c)
    lps = np.array([-10.0, -20.0, 30.0]) + 2 * 0.9 * r + 4 * 0.6 * c + 3 * 3.0 * n
    np.testing.assert_allclose(_world(scan.affine, (2, 4, 3)), lps * [-1, -1, 1], atol=1e-6)
    np.testing.assert_allclose(scan.spacing, (0.9, 0.6, 3.0), atol=1e-6)


def test_signed_12_bit_pixels_are_sign_extended(tmp_path):
    values = np.array([[-1000, -1, 0, 2047]], dtype=np.int16)
    for k in range(3):
        ds = make_dataset(np.zeros((1, 4)), (0, 0, 2.0 * k), intercept=0.0)
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 12, 11
        ds.PixelData = (values.astype(np.int32) & 0x0FFF).astype(np.uint16).tobytes()  # upper 4 bits clear
        ds.save_as(tmp_path / f"{k}.dcm", enforce_file_format=True)
    np.testing.assert_array_equal(read_scan(tmp_path).array[:, 0, 1], values[0])


def test_gap_series_reports_expected_vs_found():
    with pytest.raises(GeometryError, match=r"missing slices: expected 165 .* found 4"):
        read_scan(PYDICOM_FILES / "dicomdirtests/77654033/CT2")


def test_mixed_orientations_rejected():
    with pytest.raises(GeometryError, match="mixed orientations"):
        read_scan(PYDICOM_FILES / "dicomdirtests/98892003/MR700")


@pytest.mark.parametrize("name, error", [("MR_truncated.dcm", CorruptFileError), ("no_meta.dcm", NotAScanError),
                                         ("SC_rgb_jpeg_dcmtk.dcm", UnsupportedInputError)])  # fmt: skip
def test_broken_pydicom_files(name, error):
    with pytest.raises(error) as info:
        read_scan(get_testdata_file(name))
    assert name in str(info.value)


def test_single_jpeg2000_file_decodes_then_is_refused_as_2d():
    with pytest.raises(UnsupportedInputError, match="single 2D image"):
        read_scan(get_testdata_file("JPEG2000.dcm"))


@pytest.mark.parametrize("syntax", [pydicom.uid.JPEG2000Lossless, pydicom.uid.RLELossless])
def test_compressed_series_reads_equal_to_uncompressed(tmp_path, syntax):
    make_series(tmp_path / "plain", 4, rows=40, cols=36)
    folder = tmp_path / "packed"
    folder.mkdir()
    for path in (tmp_path / "plain").iterdir():
        ds = pydicom.dcmread(path)
        ds.compress(syntax)
        ds.save_as(folder / path.name)
    plain, packed = read_scan(tmp_path / "plain"), read_scan(folder)
    np.testing.assert_array_equal(plain.array, packed.array)
    np.testing.assert_array_equal(plain.affine, packed.affine)
    assert packed.meta["transfer_syntax"] == syntax.name


def test_missing_decoder_names_syntax_and_fix(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("JPEG2000.dcm"))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.UID("1.2.840.10008.1.2.4.100")  # MPEG2: no decoder exists
    ds.save_as(tmp_path / "mpeg.dcm")
    with pytest.raises(DecoderMissingError, match="MPEG2 .*decompress first"):
        read_scan(tmp_path / "mpeg.dcm")


def test_truncated_slice_in_series(tmp_path):
    shutil.copytree(CT5N, tmp_path / "s")
    victim = tmp_path / "s" / "2693"
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(CorruptFileError, match="2693"):
        read_scan(tmp_path / "s")


def test_several_series_localizer_and_non_image_objects(tmp_path):
    make_series(tmp_path, 6, series_uid="1.2.3.100", prefix="A")
    make_series(tmp_path, 4, series_uid="1.2.3.200", prefix="B", modality="MR", intercept=0.0)
    scout = make_dataset(np.zeros((10, 8)), (0, 0, 0), series_uid="1.2.3.300")
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.save_as(tmp_path / "scout.dcm", enforce_file_format=True)
    sr = pydicom.dcmread(get_testdata_file("test-SR.dcm"))
    sr.save_as(tmp_path / "report.dcm")
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(CorruptFileError, match="1 file.* cannot be read .*empty.dcm"):
        read_scan(tmp_path)  # an unreadable file may be a slice: never read the series without it silently
    (tmp_path / "notes").write_bytes(b"not DICOM at all")  # not DICOM: skipped, as always
    scan = read_scan(tmp_path, limits=ReadLimits(skip_corrupt_slices=True))
    assert scan.shape[2] == 6 and scan.meta["series_uid_hash"] == uid_hash("1.2.3.100")
    kinds = {s.uid_hash: (s.kind, s.skipped_reason) for s in scan.series}
    assert kinds[uid_hash("1.2.3.300")][0] == "localizer"
    assert kinds[sr.SeriesInstanceUID and uid_hash(sr.SeriesInstanceUID)] == ("SR", "SR is not an image series")
    assert scan.meta["n_unreadable_files"] == 2 and scan.meta["unreadable_files"][0]["file"] == "empty.dcm"
    (tmp_path / "empty.dcm").unlink()
    by_hash = read_scan(tmp_path, series_uid=uid_hash("1.2.3.200"))
    by_uid = read_scan(tmp_path, series_uid="1.2.3.200")
    assert by_hash.modality == by_uid.modality == "MR" and by_hash.shape[2] == 4
    with pytest.raises(InputError, match="no series matches"):
        read_scan(tmp_path, series_uid="9.9.9")
    with pytest.raises(UnsupportedInputError, match="not an image"):
        read_scan(tmp_path, series_uid=sr.SeriesInstanceUID)
    (tmp_path / "empty.dcm").write_bytes(b"")
    found = probe(tmp_path)
    assert [s.n_files for s in found.images] == [6, 4] and found.failed[0][:2] == ("empty.dcm", "corrupt")
    assert found.images[0].spacing == pytest.approx((0.8, 0.7, 2.0))


def test_uneven_spacing_errors_unless_resampling_is_allowed(tmp_path):
    offsets = [0.0, 2.0, 4.0, 7.0, 9.0, 11.0]  # one 3 mm gap among 2 mm steps
    stored = make_series(tmp_path, 6, offsets=offsets, intercept=0.0)
    with pytest.raises(GeometryError, match=r"spacing varies \(2 to 3 mm\)"):
        read_scan(tmp_path)
    scan = read_scan(tmp_path, allow_resample=True)
    assert scan.shape[2] == 6 and scan.spacing[2] == pytest.approx(2.0)
    np.testing.assert_allclose(scan.array[:, :, 3], ((stored[2] + 2 * stored[3]) / 3).T, rtol=1e-5)
    np.testing.assert_array_equal(scan.array[:, :, 0], stored[0].T)
    np.testing.assert_allclose(scan.array[:, :, 5], ((stored[4] + stored[5].astype(float)) / 2).T)  # 10 mm
    assert "uneven" in scan.meta["resampled"][0]


def test_gantry_tilt_errors_unless_resampling_is_allowed(tmp_path):
    shifts = [(0.0, k * 0.7, 0.0) for k in range(5)]  # slice k moved k rows (0.7 mm) along +y
    stored = make_series(tmp_path, 5, shifts=shifts, intercept=0.0)
    with pytest.raises(GeometryError, match="gantry tilt of"):
        read_scan(tmp_path)
    scan = read_scan(tmp_path, allow_resample=True)
    # Slice k sits k rows further along j: target (i, j) reads source row j - k.
    np.testing.assert_allclose(scan.array[:, 4, 3], stored[3][1, :], atol=1e-3)
    assert "tilt" in scan.meta["resampled"][0]


def test_read_dicom_datasets_sorted_by_position():
    datasets = read_dicom_datasets(CT5N)
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    assert z == sorted(z) and all("PixelData" in ds for ds in datasets)


def test_hostile_deep_nesting_is_a_typed_error(tmp_path):
    head = io.BytesIO()
    make_dataset(np.zeros((2, 2)), (0, 0, 0)).save_as(head, enforce_file_format=True)
    sequence = struct.pack("<HH2sHI", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF)  # undefined length
    level = sequence + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)  # an item that never ends
    (tmp_path / "deep.dcm").write_bytes(head.getvalue() + level * 20_000)  # pydicom issue #2330
    with pytest.raises(CorruptFileError, match="nested too deeply"):
        read_scan(tmp_path / "deep.dcm")


@pytest.mark.integration
def test_cli_inspect_lists_series_and_picks_one_by_hash(tmp_path, capsys):
    import json

    from medssl.cli import main

    make_series(tmp_path, 5, series_uid="1.2.3.100", prefix="A")
    make_series(tmp_path, 3, series_uid="1.2.3.200", prefix="B", modality="MR", intercept=0.0)
    assert main(["inspect", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert f"* {uid_hash('1.2.3.100')}" in text and uid_hash("1.2.3.200") in text
    assert main(["inspect", str(tmp_path), "--json", "--series", uid_hash("1.2.3.200")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["modality"] == "MR" and info["shape"] == [8, 10, 3]
    assert [s["selected"] for s in info["series"]] == [False, True]
    out = tmp_path / "out" / "mr.nii"
    assert main(["convert", str(tmp_path), str(out), "--series", "1.2.3.200", "--canonical"]) == 0
    assert read_scan(out).orientation == "RAS"


def test_dicom_voxel_limit_checked_before_decoding(tmp_path):
    make_series(tmp_path, 4)
    with pytest.raises(LimitExceededError, match="exceed the read limits"):
        read_scan(tmp_path, limits=ReadLimits(max_voxels=100))
    huge = make_dataset(np.zeros((2, 2)), (0, 0, 0))
    huge.Rows = huge.Columns = 60000  # header claims 3.6e9 pixels; the data holds 4
    huge.save_as(tmp_path / "huge.dcm", enforce_file_format=True)
    with pytest.raises(LimitExceededError):
        read_scan(tmp_path / "huge.dcm")


def test_native_pixels_read_from_the_bytes_equal_pydicoms_decode(head_ct_series):
    compared = 0
    for path in [*sorted(head_ct_series.glob("*.dcm"))[:3], *get_testdata_files("*.dcm")]:
        try:
            ds = pydicom.dcmread(path)
            ours = slice_pixels(ds, "x")
            theirs = _modality_lut(ds, pydicom.dcmread(path).pixel_array, "x")
        except Exception:  # noqa: BLE001 - pydicom's deliberately broken, colour and multi-frame files
            continue
        np.testing.assert_array_equal(ours, theirs)
        compared += 1
    assert compared >= 20  # signed, unsigned, 8/16/32-bit, big endian, BitsStored < BitsAllocated among them


def test_headers_for_a_seg_are_decoded_whole_and_a_plain_read_decodes_what_it_needs(head_ct_series):
    _, datasets = read_scan_and_datasets(head_ct_series)
    assert all(isinstance(ds.get_item(tag), DataElement) for ds in datasets for tag in ds.keys())
    _, plain = read_dicom_series(head_ct_series, series_uid=None, allow_resample=False, reveal_phi=False,
                                 limits=ReadLimits(), case_id="c")  # fmt: skip
    decoded = {pydicom.datadict.keyword_for_tag(t) for t in plain[0].keys()
               if isinstance(plain[0].get_item(t), DataElement)}  # fmt: skip
    assert "PatientName" not in decoded and decoded <= READ_ELEMENTS
