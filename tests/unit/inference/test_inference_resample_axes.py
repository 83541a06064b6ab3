"""Grids that differ only by axis order and direction are mapped exactly (permute + flip),
with the values the interpolating resample gives at those voxel centres."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
import torch

from medssl.inference import resample as rs


def _monai(data, src, dst, shape, mode):
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    out = SpatialResample(mode=mode, padding_mode="zeros", dtype=torch.float32)(
        MetaTensor(data, affine=torch.as_tensor(src)), dst_affine=torch.as_tensor(dst), spatial_size=shape)
    return out.as_tensor()


def _reoriented(affine, shape, codes):
    """The affine and shape of the same voxels reoriented to ``codes`` (as preprocessing does)."""
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine), nib.orientations.axcodes2ornt(codes))
    new_affine = affine @ nib.orientations.inv_ornt_aff(ornt, shape)
    new_shape = tuple(int(shape[int(o[0])]) for o in sorted(enumerate(ornt[:, 0]), key=lambda t: t[1]))
    return new_affine, new_shape


@pytest.mark.parametrize("codes", ["RAS", "LPS", "SAR", "PIL", "ALS"])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_axis_order_and_direction_changes_are_exact_and_match_interpolation(codes, mode):
    src = np.diag([-0.9, -0.9, 1.5, 1.0])
    src[:3, 3] = [40.0, 50.0, -20.0]
    src_shape = (7, 6, 5)
    dst, dst_shape = _reoriented(src, src_shape, codes)
    data = torch.rand(3, *src_shape)
    assert rs.axis_map(src, src_shape, dst, dst_shape) is not None
    exact = rs.resample_to_grid(data, src, dst, dst_shape, mode=mode)
    assert exact.shape == (3, *dst_shape) and exact.is_contiguous()
    assert torch.allclose(exact, _monai(data, src, dst, dst_shape, mode), atol=1e-5)


def test_exact_mapping_round_trips():
    src = np.diag([1.0, 2.0, 3.0, 1.0])
    data = torch.rand(2, 4, 5, 6)
    for perm in itertools.permutations(range(3)):
        dst = np.eye(4)
        dst[:3, :3] = src[:3, list(perm)]
        shape = tuple(data.shape[1 + p] for p in perm)
        there = rs.resample_to_grid(data, src, dst, shape)
        assert torch.equal(rs.resample_to_grid(there, dst, src, tuple(data.shape[1:])), data)


@pytest.mark.parametrize("change", ["spacing", "shift", "rotation", "crop"])
def test_other_grid_changes_still_interpolate(change):
    src = np.diag([1.0, 1.0, 1.0, 1.0])
    dst, shape = src.copy(), (4, 4, 4)
    if change == "spacing":
        dst[0, 0] = 0.5
    elif change == "shift":
        dst[0, 3] = 0.5
    elif change == "rotation":
        c, s = np.cos(0.1), np.sin(0.1)
        dst[:2, :2] = [[c, -s], [s, c]]
    else:
        shape = (3, 4, 4)
    assert rs.axis_map(src, (4, 4, 4), dst, shape) is None
