"""``resample_label`` cuts the target out of the source when its voxels are source voxels
(same grid, reoriented, cropped), and gives what the general resample gives, always."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import affine_transform

from medssl.data.label_resample import resample_label, whole_voxel_map


def _general(label, src, shape, dst):
    m = np.linalg.inv(src) @ dst
    return affine_transform(label, m[:3, :3], m[:3, 3], output_shape=shape, order=0, mode="grid-constant", cval=0)


SRC = np.array([[-0.8, 0, 0, 10.0], [0, -0.9, 0, -4.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]])
PERMUTE_FLIP = np.array([[0, 1, 0, 0], [-1, 0, 0, 11], [0, 0, 1, 0], [0, 0, 0, 1.0]])  # dst voxel -> src voxel
CROP = np.array([[1, 0, 0, 2], [0, 1, 0, 3], [0, 0, 1, 1], [0, 0, 0, 1.0]])
SHIFT_OUT = np.array([[1, 0, 0, -2], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
HALF = np.array([[1, 0, 0, 0.5], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
RESPACED = np.diag([0.5, 1, 1, 1.0])


@pytest.mark.parametrize("name,to_src,shape,cut", [
    ("same", np.eye(4), (10, 12, 6), True), ("permuted_flipped", PERMUTE_FLIP, (12, 10, 6), True),
    ("crop", CROP, (5, 6, 3), True), ("partly_outside", SHIFT_OUT, (10, 12, 6), False),
    ("half_voxel", HALF, (9, 12, 6), False), ("respaced", RESPACED, (19, 12, 6), False)])  # fmt: skip
def test_resample_label_equals_the_general_resample(name, to_src, shape, cut):
    label = np.random.default_rng(0).integers(0, 5, (10, 12, 6)).astype(np.uint8)
    dst = SRC @ to_src
    assert (whole_voxel_map(SRC, label.shape, dst, shape) is not None) == cut
    out = resample_label(label, SRC, shape, dst)
    assert out.dtype == label.dtype and out.shape == shape
    assert np.array_equal(out, _general(label, SRC, shape, dst))
    out[...] = 0  # a new array, never a view of the source
    assert label.any()
