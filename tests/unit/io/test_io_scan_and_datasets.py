"""``read_scan_and_datasets`` gives read_scan's Scan and, from the same single read, the
series' headers that ``read_dicom_datasets`` gives (less pixel data), so a SEG built from
either is the same."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pydicom
import pytest

from medssl.inference.dicom_seg import build_dicom_seg
from medssl.io import read_dicom_datasets, read_scan, read_scan_and_datasets

pytestmark = pytest.mark.realdata


def _elements(ds):
    return {e.tag: e.value for e in ds if e.keyword not in ("PixelData",)}, dict(ds.file_meta)


def test_same_scan_and_headers_as_the_separate_reads_and_each_file_read_once(head_ct_series, monkeypatch):
    separate = read_scan(head_ct_series), read_dicom_datasets(head_ct_series)
    calls: Counter = Counter()
    real = pydicom.dcmread
    monkeypatch.setattr(pydicom, "dcmread", lambda fp, *a, **k: calls.update([getattr(fp, "name", fp)]) or real(fp, *a, **k))
    scan, datasets = read_scan_and_datasets(head_ct_series)
    assert len(calls) == 108 and set(calls.values()) == {1}
    assert np.array_equal(scan.array, separate[0].array) and np.array_equal(scan.affine, separate[0].affine)
    assert scan.meta == separate[0].meta
    assert [_elements(a) for a in datasets] == [_elements(b) for b in separate[1]]
    assert all("PixelData" not in ds for ds in datasets)

    label = (scan.array > 300).astype(np.uint8)  # bone
    labels = {"0": "background", "1": "bone"}
    one = build_dicom_seg(label, scan.affine, datasets, labels, uid_seed="x", version="t")
    two = build_dicom_seg(label, scan.affine, separate[1], labels, uid_seed="x", version="t")
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                    "NumberOfFrames", "SegmentSequence", "ReferencedSeriesSequence", "PerFrameFunctionalGroupsSequence"):
        assert one.get(keyword) == two.get(keyword), keyword
    assert one.PixelData == two.PixelData


def test_nifti_has_no_datasets(real_data):
    scan, datasets = read_scan_and_datasets(real_data / "ct" / "lung1.nii.gz")
    assert datasets is None and scan.array.shape == (512, 512, 48)
