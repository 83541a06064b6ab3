"""Moving arrays between voxel grids through world space.

The model sees the scan on its preprocessing grid (reoriented, respaced, maybe cropped);
its output goes back onto the scan's own grid by mapping every target voxel through the two
voxel -> RAS+ affines, so orientation, spacing and crops are undone by one resampling."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from medssl.data.label_resample import whole_voxel_map


def same_grid(affine_a: np.ndarray, shape_a: tuple[int, ...], affine_b: np.ndarray, shape_b: tuple[int, ...]) -> bool:
    return tuple(shape_a) == tuple(shape_b) and np.allclose(affine_a, affine_b, atol=1e-4)


def axis_map(src_affine: np.ndarray, src_shape: tuple[int, ...], dst_affine: np.ndarray,
             dst_shape: tuple[int, ...], atol: float = 1e-4) -> tuple[list[int], list[int]] | None:
    """When the ``dst`` grid holds exactly the ``src`` grid's voxel centres, only with its axes
    reordered or reversed: (perm, flipped) such that dst axis a is src axis ``perm[a]``,
    reversed for a in ``flipped``. Otherwise None (an interpolation is needed)."""
    voxel_map = whole_voxel_map(src_affine, src_shape, dst_affine, dst_shape, atol)
    if voxel_map is None or any(dst_shape[a] != src_shape[p] for a, (p, _, _) in enumerate(voxel_map)):
        return None
    return [p for p, _, _ in voxel_map], [a for a, (_, _, step) in enumerate(voxel_map) if step < 0]


def is_exact_regrid(src_affine: np.ndarray, src_shape: tuple[int, ...], dst_affine: np.ndarray,
                    dst_shape: tuple[int, ...]) -> bool:
    """Whether ``resample_to_grid`` between these grids only moves voxels (same grid, or axes
    reordered / reversed), so that any per-voxel operation commutes with it."""
    return same_grid(src_affine, src_shape, dst_affine, dst_shape) or axis_map(
        src_affine, src_shape, dst_affine, dst_shape) is not None  # fmt: skip


def resample_to_grid(
    data: Tensor,
    src_affine: np.ndarray,
    dst_affine: np.ndarray,
    dst_shape: tuple[int, int, int],
    mode: str = "bilinear",
) -> Tensor:
    """``data`` (C, X, Y, Z) on the ``src_affine`` grid -> (C, *dst_shape) on the ``dst_affine`` grid.

    ``mode`` "bilinear" (trilinear in 3D) for probabilities, "nearest" for labels. Target voxels
    outside the source volume get 0. Runs on ``data``'s device. Grids that differ only by axis
    order and direction (a reorientation without respacing) are permuted and flipped exactly."""
    if same_grid(src_affine, data.shape[1:], dst_affine, dst_shape):
        return data
    axes = axis_map(src_affine, tuple(data.shape[1:]), dst_affine, tuple(dst_shape))
    if axes is not None:  # the same voxels in another axis order / direction: exact, no interpolation
        perm, flips = axes
        out = data.permute(0, *(1 + a for a in perm))
        return (out.flip([1 + a for a in flips]) if flips else out).contiguous()
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    src = MetaTensor(data, affine=torch.as_tensor(np.asarray(src_affine, dtype=np.float64)))
    out = SpatialResample(mode=mode, padding_mode="zeros", dtype=torch.float32)(
        src, dst_affine=torch.as_tensor(np.asarray(dst_affine, dtype=np.float64)), spatial_size=tuple(dst_shape)
    )
    return out.as_tensor() if isinstance(out, MetaTensor) else out
