"""The fast DICOM path against pydicom's: on every file it accepts, the same elements with
the same values and the same pixels; every file pydicom's checks refuse, it hands on.
Checked on the real series, pydicom's own test files (implicit and explicit VR, big endian,
compressed, sequences, broken) and a few hundred seeded mutations of real slices."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files

from medssl.errors import MedsslError
from medssl.io.dicom_elements import decode_all, quiet_pydicom
from medssl.io.dicom_fast import FastDataset, fast_dataset
from medssl.io.dicom_headers import PROBE_ELEMENTS, READ_ELEMENTS
from medssl.io.dicom_pixels import slice_pixels
from tests.unit.io.io_fuzz_cases import DICOM_MUTATIONS, SYNTAXES, _byte_damage, claiming_syntax, raw_element_damage


def _slow(data: bytes, decode: frozenset[str], headers_only: bool):
    """pydicom's read as ``read_dataset`` does it: the dataset, or the exception."""
    try:
        with quiet_pydicom():
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=headers_only)
            decode_all(ds, "f.dcm", only=decode)
        return ds
    except Exception as err:  # noqa: BLE001 - whatever pydicom's path raises
        return err


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, pydicom.multival.MultiValue):
        return isinstance(b, (list, tuple, pydicom.multival.MultiValue)) and len(a) == len(b) \
            and all(_same(x, y) for x, y in zip(a, b))  # fmt: skip
    if isinstance(a, float) or isinstance(a, int) and not isinstance(b, str):
        try:
            return math.isclose(float(a), float(b), rel_tol=0, abs_tol=0) or float(a) == float(b)
        except (TypeError, ValueError):
            return False
    if isinstance(a, bytes):
        return bytes(a) == bytes(b)
    return str(a) == str(b)


def _pixels(ds):
    try:
        return slice_pixels(ds, "f.dcm")
    except MedsslError as err:
        return type(err)


def check_agrees(data: bytes) -> tuple[int, int]:
    """(fast reads, hand-ons) over both decode sets and both read kinds; asserts agreement."""
    fast_reads = hand_ons = 0
    for decode in (READ_ELEMENTS, PROBE_ELEMENTS):
        for headers_only in (True, False):
            f = io.BytesIO(data)
            fast = fast_dataset(f, len(data), decode, headers_only=headers_only)
            if fast is None:
                assert f.tell() == 0  # rewound for pydicom
                hand_ons += 1
                continue
            fast_reads += 1
            assert isinstance(fast, FastDataset)
            slow = _slow(data, decode, headers_only)
            assert not isinstance(slow, Exception), f"fast path accepted what pydicom refuses: {slow!r}"
            for keyword in decode:
                assert (keyword in fast) == (keyword in slow), keyword
                if keyword in slow:
                    assert _same(fast.get(keyword), slow.get(keyword)), keyword
            assert str(fast.file_meta.TransferSyntaxUID) == str(slow.file_meta.TransferSyntaxUID)
            if not headers_only and "PixelData" in slow:
                a, b = _pixels(fast), _pixels(slow)
                if isinstance(a, np.ndarray):
                    assert isinstance(b, np.ndarray) and np.array_equal(a, b)
                else:
                    assert a == b
    return fast_reads, hand_ons


@pytest.mark.realdata
def test_real_series_takes_the_fast_path_with_pydicoms_values(head_ct_series):
    files = sorted(Path(head_ct_series).glob("*.dcm"))
    fast = sum(check_agrees(p.read_bytes())[0] for p in files[:20])
    assert fast == 20 * 4


def test_pydicoms_test_files_agree_or_are_handed_on():
    files = [p for p in get_testdata_files("*.dcm") if Path(p).stat().st_size < 4_000_000]
    assert len(files) > 50
    fast = hand_on = 0
    for p in files:
        a, b = check_agrees(Path(p).read_bytes())
        fast, hand_on = fast + a, hand_on + b
    assert fast > 40 and hand_on > 40  # both paths taken: plain files fast, the rest pydicom


def test_implicit_vr_file_with_a_sequence_reads_fast():
    data = Path(get_testdata_files("CT_small.dcm")[0]).read_bytes()  # explicit VR, has a sequence
    ds = pydicom.dcmread(io.BytesIO(data))
    out = io.BytesIO()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.save_as(out, implicit_vr=True, little_endian=True, enforce_file_format=True)
    for blob in (data, out.getvalue()):
        fast = fast_dataset(io.BytesIO(blob), len(blob), READ_ELEMENTS, headers_only=False)
        assert fast is not None
        assert check_agrees(blob)[0] == 4


@pytest.mark.realdata
def test_mutated_real_slices_agree_or_are_handed_on(head_ct_series):
    base = sorted(Path(head_ct_series).glob("*.dcm"))[50].read_bytes()
    rng = np.random.default_rng(20261202)
    fast = hand_on = 0
    for i in range(240):
        kind = i % 4
        if kind == 0:
            name = str(rng.choice([k for k, v in DICOM_MUTATIONS.items() if v is not None]))
            ds = pydicom.dcmread(io.BytesIO(base))
            DICOM_MUTATIONS[name](ds, rng)
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=False)
            data = out.getvalue()
        elif kind == 1:
            data = raw_element_damage(base, rng)
        elif kind == 2:
            data = _byte_damage(base, rng)
        else:
            data = claiming_syntax(pydicom.dcmread(io.BytesIO(base)), SYNTAXES[int(rng.integers(len(SYNTAXES)))])
        a, b = check_agrees(data)
        fast, hand_on = fast + a, hand_on + b
    assert fast > 100 and hand_on > 100


@pytest.mark.parametrize("dtype,slope,intercept", [(np.uint16, "1", "-1024"), (np.int16, "2", "-1024"),
                                                   (np.uint8, "1", "0"), (np.int16, "0.5", "-1024.5"),
                                                   (np.uint16, "1", "1e7")])  # fmt: skip
def test_rescale_in_float32_equals_the_float64_rescale(dtype, slope, intercept):
    from pydicom.dataset import Dataset

    from medssl.io import dicom_pixels

    info = np.iinfo(dtype)
    stored = np.random.default_rng(0).integers(info.min, info.max, (64, 64), endpoint=True).astype(dtype)
    ds = Dataset()
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    expected = (stored.astype(np.float64) * float(slope) + float(intercept)).astype(np.float32)
    got = dicom_pixels._modality_lut(ds, stored, "f.dcm")
    assert got.dtype == np.float32 and np.array_equal(got, expected)
