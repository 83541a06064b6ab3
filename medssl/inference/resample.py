"""Moving arrays between voxel grids through world space.

The model sees the scan on its preprocessing grid (reoriented, respaced, maybe cropped);
its output goes back onto the scan's own grid by mapping every target voxel through the two
voxel -> RAS+ affines, so orientation, spacing and crops are undone by one resampling."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def same_grid(affine_a: np.ndarray, shape_a: tuple[int, ...], affine_b: np.ndarray, shape_b: tuple[int, ...]) -> bool:
    return tuple(shape_a) == tuple(shape_b) and np.allclose(affine_a, affine_b, atol=1e-4)


def resample_to_grid(
    data: Tensor,
    src_affine: np.ndarray,
    dst_affine: np.ndarray,
    dst_shape: tuple[int, int, int],
    mode: str = "bilinear",
) -> Tensor:
    """``data`` (C, X, Y, Z) on the ``src_affine`` grid -> (C, *dst_shape) on the ``dst_affine`` grid.

    ``mode`` "bilinear" (trilinear in 3D) for probabilities, "nearest" for labels. Target voxels
    outside the source volume get 0. Runs on ``data``'s device."""
    if same_grid(src_affine, data.shape[1:], dst_affine, dst_shape):
        return data
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    src = MetaTensor(data, affine=torch.as_tensor(np.asarray(src_affine, dtype=np.float64)))
    out = SpatialResample(mode=mode, padding_mode="zeros", dtype=torch.float32)(
        src, dst_affine=torch.as_tensor(np.asarray(dst_affine, dtype=np.float64)), spatial_size=tuple(dst_shape)
    )
    return out.as_tensor() if isinstance(out, MetaTensor) else out
