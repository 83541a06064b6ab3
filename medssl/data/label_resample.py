"""The one label-map resampling of medssl: nearest neighbour through world space.

Used wherever a label map moves between voxel grids (a label on another grid than its
image, labels onto the fine-tune preprocessing grid, DICOM SEG frames from a label map).
A target voxel takes the label of the source voxel whose extent holds its centre (source
voxels span +-0.5 voxel around their centres, ties round up); outside the source volume
it is 0. When every target voxel centre is a source voxel centre (the same grid, a
reorientation, a crop, one slice of it), the target is cut out of the source by indexing,
to the same values. Probabilities are resampled elsewhere (``medssl.inference.resample``,
trilinear)."""

from __future__ import annotations

import numpy as np

# a per-target-axis (source axis, source index of target index 0, step +1 or -1)
VoxelMap = list[tuple[int, int, int]]


def whole_voxel_map(src_affine: np.ndarray, src_shape: tuple[int, ...], dst_affine: np.ndarray,
                    dst_shape: tuple[int, ...], atol: float = 1e-4) -> VoxelMap | None:  # fmt: skip
    """When every ``dst`` voxel centre is a ``src`` voxel centre and ``dst`` steps along
    ``src`` axes one voxel at a time (axes reordered or reversed, offset by whole voxels,
    all inside ``src``): per ``dst`` axis (``src`` axis, start, step). A ``dst`` axis of
    one voxel may have any step (a slice's normal). Otherwise None."""
    t = np.linalg.solve(np.asarray(src_affine, dtype=np.float64), np.asarray(dst_affine, dtype=np.float64))
    rot, shift = t[:3, :3], t[:3, 3]  # src index = rot @ dst index + shift
    if not np.allclose(shift, np.round(shift), atol=atol):
        return None
    long = [a for a in range(3) if dst_shape[a] > 1]
    steps = rot[:, long]
    if not (np.allclose(np.abs(steps), np.round(np.abs(steps)), atol=atol)
            and np.allclose(np.abs(steps).sum(0), 1, atol=atol)):  # fmt: skip
        return None
    axis_of = {a: int(np.argmax(np.abs(rot[:, a]))) for a in long}
    if len(set(axis_of.values())) != len(long):
        return None
    free = iter(sorted(set(range(3)) - set(axis_of.values())))
    out: VoxelMap = []
    for a in range(3):
        p = axis_of[a] if a in axis_of else next(free)
        step = int(np.sign(rot[p, a])) if a in axis_of else 1
        first = int(round(shift[p]))
        last = first + step * (dst_shape[a] - 1)
        if min(first, last) < 0 or max(first, last) >= src_shape[p]:
            return None
        out.append((p, first, step))
    return out


def cut_by_voxel_map(src: np.ndarray, voxel_map: VoxelMap, dst_shape: tuple[int, ...]) -> np.ndarray:
    """``src`` indexed by ``whole_voxel_map``'s result: a new (``dst_shape``) array."""
    index: list[slice] = [slice(None)] * 3
    for (p, first, step), n in zip(voxel_map, dst_shape[:3]):
        stop = first + step * n
        index[p] = slice(first, stop if stop >= 0 else None, step)
    return np.array(src[tuple(index)].transpose([p for p, _, _ in voxel_map]), order="C")  # a copy


def resample_label(label: np.ndarray, src_affine: np.ndarray, dst_shape: tuple[int, ...],
                   dst_affine: np.ndarray) -> np.ndarray:
    """``label`` (X, Y, Z) on ``src_affine`` -> ``dst_shape`` on ``dst_affine`` (both voxel ->
    the same world frame, e.g. RAS+ mm), same dtype."""
    label = np.asarray(label)
    dst_shape = tuple(int(s) for s in dst_shape[:3])
    voxel_map = whole_voxel_map(src_affine, label.shape, dst_affine, dst_shape)
    if voxel_map is not None:
        return cut_by_voxel_map(label, voxel_map, dst_shape)
    from scipy.ndimage import affine_transform

    m = np.linalg.inv(np.asarray(src_affine, dtype=np.float64)) @ np.asarray(dst_affine, dtype=np.float64)
    out = affine_transform(label, m[:3, :3], m[:3, 3], output_shape=dst_shape, order=0, mode="grid-constant", cval=0)
    return out.astype(label.dtype, copy=False)
