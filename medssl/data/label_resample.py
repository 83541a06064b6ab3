"""The one label-map resampling of medssl: nearest neighbour through world space.

Used wherever a label map moves between voxel grids (a label on another grid than its
image, labels onto the fine-tune preprocessing grid, DICOM SEG frames from a label map).
A target voxel takes the label of the source voxel whose extent holds its centre (source
voxels span +-0.5 voxel around their centres, ties round up); outside the source volume
it is 0. Probabilities are resampled elsewhere (``medssl.inference.resample``, trilinear)."""

from __future__ import annotations

import numpy as np


def resample_label(label: np.ndarray, src_affine: np.ndarray, dst_shape: tuple[int, ...],
                   dst_affine: np.ndarray) -> np.ndarray:
    """``label`` (X, Y, Z) on ``src_affine`` -> ``dst_shape`` on ``dst_affine`` (both voxel ->
    the same world frame, e.g. RAS+ mm), same dtype."""
    from scipy.ndimage import affine_transform

    m = np.linalg.inv(np.asarray(src_affine, dtype=np.float64)) @ np.asarray(dst_affine, dtype=np.float64)
    out = affine_transform(np.asarray(label), m[:3, :3], m[:3, 3], output_shape=tuple(int(s) for s in dst_shape[:3]),
                           order=0, mode="grid-constant", cval=0)  # fmt: skip
    return out.astype(label.dtype, copy=False)
