"""Preprocessing: orientation, spacing, intensity ranges, foreground crop, label grids."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medssl.data.phantom import LIVER, make_phantom
from medssl.data.preprocess import (PreprocessConfig, build_transforms, preprocess_label, preprocess_scan,
                                    to_metatensor)
from medssl.io.scan import Scan


@pytest.fixture(scope="module")
def phantom():
    image, label, affine = make_phantom(2, shape=(24, 20, 12))
    return Scan(image, affine, "CT", "phantom", "phantom"), label


def _world_of_voxel(affine, ijk):
    return (affine @ np.append(ijk, 1.0))[:3]


def test_ct_window_output_range_and_ras(phantom):
    scan, _ = phantom
    out, affine = preprocess_scan(scan, PreprocessConfig())
    assert out.shape == (1, 24, 20, 12) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert "".join(nib.aff2axcodes(affine)) == "RAS"
    # the same world point holds the same value: reorientation moved voxels, not anatomy
    src = np.array([3, 5, 7])
    world = _world_of_voxel(scan.affine, src)
    dst = np.rint(np.linalg.solve(affine, np.append(world, 1.0))[:3]).astype(int)
    expected = np.clip((scan.array[tuple(src)] + 1000.0) / 2000.0, 0, 1)
    assert out[(0, *dst)] == pytest.approx(expected, abs=1e-6)


def test_window_values_without_clip(phantom):
    scan, _ = phantom
    cfg = PreprocessConfig(ct_window={"a_min": -100, "a_max": 100, "clip": False}, orientation="LPS")
    out, affine = preprocess_scan(scan, cfg)
    assert np.allclose(affine, scan.affine)  # already LPS: nothing moves
    assert np.allclose(out[0], (scan.array + 100.0) / 200.0, atol=1e-5)


def test_mr_percentile_and_auto(phantom):
    scan, _ = phantom
    mr = Scan(scan.array + 1024.0, scan.affine, "MR", "mr", "mr")
    out, _ = preprocess_scan(mr, PreprocessConfig())  # auto -> percentiles for MR
    assert out.min() == pytest.approx(0.0) and out.max() == pytest.approx(1.0)
    raw, _ = preprocess_scan(mr, PreprocessConfig(intensity="none"))
    assert np.allclose(np.sort(raw.ravel()), np.sort(mr.array.ravel()))


def test_spacing_resample_and_label_grid(phantom):
    scan, label = phantom
    cfg = PreprocessConfig(spacing=(12.0, 12.0, 12.0))
    out, affine = preprocess_scan(scan, cfg)
    lab, lab_affine = preprocess_label(label, scan.affine, cfg)
    assert np.allclose(np.abs(np.diag(affine)[:3]), 12.0)
    assert lab.shape == out.shape and np.allclose(lab_affine, affine)
    assert lab.dtype == np.uint8 and set(np.unique(lab)) <= set(np.unique(label))  # nearest: no new labels
    for axis in range(3):  # same physical extent, within a voxel
        assert abs(out.shape[axis + 1] * 12.0 - scan.shape[axis] * scan.spacing[axis]) <= 12.0 + 1e-3


def test_crop_foreground_keeps_body(phantom):
    scan, _ = phantom
    out, affine = preprocess_scan(scan, PreprocessConfig(crop_foreground=True))
    full, _ = preprocess_scan(scan, PreprocessConfig())
    assert out.shape[1] * out.shape[2] < full.shape[1] * full.shape[2]
    assert (out > 0.25).sum() == (full > 0.25).sum()  # every body voxel (HU > -500) kept


def test_build_transforms_pairs_image_and_label(phantom):
    scan, label = phantom
    cfg = PreprocessConfig(spacing=(10.0, 10.0, 10.0), crop_foreground=True)
    data = build_transforms(cfg, label_key="label")(
        {"image": to_metatensor(scan.array, scan.affine), "label": to_metatensor(label, scan.affine)})
    assert data["image"].shape == data["label"].shape
    assert float(data["image"].max()) <= 1.0 and float(data["image"].min()) >= 0.0
    assert np.allclose(data["image"].affine, data["label"].affine)
    assert (data["label"] == LIVER).any()
    assert "".join(nib.aff2axcodes(np.asarray(data["image"].affine))) == "RAS"
