"""Hostile or sloppy DICOM headers: bad spacing, rounded orientation cosines, malformed
optional tags, values that pydicom would quote in its warnings."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from medssl.errors import CorruptFileError, GeometryError
from medssl.io import probe, read_scan
from tests.unit.io.test_io_helpers import make_series

NEAR_ORTHOGONAL_IOP = (1, 0, 0, 0.008, 0.99997, 0)  # rounded cosines as some scanners write them


def _patch_raw(folder: Path, keyword: str, vr: str, value: bytes) -> None:
    """Write ``value`` verbatim into every file, bypassing pydicom's value checks."""
    tag = Tag(keyword)
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
        ds.save_as(path)


@pytest.mark.parametrize("spacing", [(-0.7, 0.8), (0.7, 0.0)])
def test_negative_or_zero_pixel_spacing_is_corrupt(tmp_path, spacing):
    make_series(tmp_path, 4, spacing=spacing)
    with pytest.raises(CorruptFileError, match="PixelSpacing must be positive") as info:
        read_scan(tmp_path)
    assert info.value.source.startswith("IM")
    assert probe(tmp_path).images[0].skipped_reason.startswith("corrupt: PixelSpacing must be positive")


def test_near_orthogonal_orientation_is_orthonormalised(tmp_path):
    make_series(tmp_path / "s", 5, iop=NEAR_ORTHOGONAL_IOP)
    scan = read_scan(tmp_path / "s")
    axes = scan.affine[:3, :3] / np.linalg.norm(scan.affine[:3, :3], axis=0)
    np.testing.assert_allclose(axes.T @ axes, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(scan.spacing, (0.8, 0.7, 2.0), atol=1e-4)
    np.testing.assert_allclose(scan.affine[:3, 3], [10.0, 20.0, 30.0])  # first slice's IPP, LPS -> RAS


@pytest.mark.integration
def test_near_orthogonal_series_converts_and_reads_back(tmp_path):
    from medssl.cli import main

    make_series(tmp_path / "s", 5, iop=NEAR_ORTHOGONAL_IOP, spacing=(30.0, 30.0))  # 270 mm: shear > 1 mm
    out = tmp_path / "s.nii.gz"
    assert main(["convert", str(tmp_path / "s"), str(out)]) == 0
    assert main(["inspect", str(out)]) == 0
    np.testing.assert_allclose(read_scan(out).affine, read_scan(tmp_path / "s").affine, atol=1e-4)


def test_orientation_beyond_tolerance_is_a_geometry_error(tmp_path):
    make_series(tmp_path, 4, iop=(1, 0, 0, 0.05, 0.9987, 0))
    with pytest.raises(GeometryError, match="not orthonormal"):
        read_scan(tmp_path)


def test_malformed_optional_tag_is_ignored_without_quoting_it(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    make_series(tmp_path, 4)
    _patch_raw(tmp_path, "SliceThickness", "DS", b"1.5 SENTINEL")
    _patch_raw(tmp_path, "WindowCenter", "DS", b"40\\SENTINEL")
    scan = read_scan(tmp_path)
    assert scan.shape == (8, 10, 4) and scan.meta["slice_thickness_mm"] is None
    assert scan.meta["window_center"] == 40.0
    assert "SENTINEL" not in caplog.text


@pytest.mark.parametrize("keyword", ["Rows", "Columns"])
def test_empty_required_size_tag_is_corrupt_and_named(tmp_path, keyword):
    make_series(tmp_path, 4)
    _patch_raw(tmp_path, keyword, "US", b"")
    with pytest.raises(CorruptFileError, match=f"{keyword} is missing or malformed") as info:
        read_scan(tmp_path)
    assert info.value.source.startswith("IM")
    found = probe(tmp_path)
    assert found.images[0].shape is None and found.images[0].skipped_reason.startswith("corrupt: ")


@pytest.mark.integration
def test_pydicom_value_warnings_never_reach_stderr(tmp_path):
    make_series(tmp_path, 4, series_uid="1.2.840.SENTINELSERIES")  # not a valid UID: pydicom would warn
    _patch_raw(tmp_path, "SliceThickness", "DS", b"1.5 SENTINEL")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    for argv in (["inspect", str(tmp_path)], ["data", "index", str(tmp_path), "--out", str(tmp_path / "m.jsonl")]):
        proc = subprocess.run([sys.executable, "-m", "medssl", *argv], capture_output=True, text=True, env=env,
                              timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "SENTINEL" not in proc.stdout + proc.stderr
