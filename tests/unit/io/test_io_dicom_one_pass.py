"""The DICOM series reader reads each file once and gives what the two-pass read gave:
SimpleITK's voxels and geometry on the real series; the same volume either way."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from medssl.io import dicom_reader
from medssl.io.limits import ReadLimits
from medssl.io.reader import read_scan
from medssl.io.sources import Member
from tests.sitk_reference import sitk_read_ras


def _count_reads(monkeypatch) -> Counter:
    """Opens per file, whichever parser (medssl's fast one or pydicom) then reads it."""
    calls: Counter = Counter()
    real = Member.open

    def counting(self):
        calls[self.name] += 1
        return real(self)

    monkeypatch.setattr(Member, "open", counting)
    return calls


@pytest.mark.realdata
def test_each_file_read_once_and_matches_simpleitk(head_ct_series, monkeypatch):
    pytest.importorskip("SimpleITK")
    calls = _count_reads(monkeypatch)
    scan = read_scan(head_ct_series)
    assert len(calls) == 108 and set(calls.values()) == {1}
    array, affine = sitk_read_ras(head_ct_series)
    assert np.array_equal(scan.array, array)
    assert np.allclose(scan.affine, affine, atol=1e-4)


@pytest.mark.realdata
def test_two_pass_read_when_files_exceed_the_share_gives_the_same_scan(head_ct_series, monkeypatch):
    one = read_scan(head_ct_series)
    monkeypatch.setattr(dicom_reader, "ONE_PASS_SHARE", 0.0)
    calls = _count_reads(monkeypatch)
    two = read_scan(head_ct_series, limits=ReadLimits())
    assert set(calls.values()) == {2}
    assert np.array_equal(one.array, two.array) and np.array_equal(one.affine, two.affine)
    assert one.meta == two.meta
