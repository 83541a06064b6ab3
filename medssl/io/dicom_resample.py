"""Explicit, opt-in resampling of irregular DICOM stacks onto a regular orthogonal grid
(``allow_resample=True``): in-plane shifts undo a gantry tilt, linear interpolation along
the normal evens out slice gaps."""

from __future__ import annotations

import numpy as np

from medssl.io.dicom_geometry import StackGeometry


def undo_tilt(volume: np.ndarray, geo: StackGeometry) -> np.ndarray:
    """Shift each slice in-plane so all slice origins sit on the normal through slice 0.
    ``volume``: (X, Y, Z) in sorted slice order."""
    from scipy import ndimage  # here, not at import: scipy.ndimage takes 0.2 s to import, rarely needed

    out = np.empty_like(volume)
    fill = float(volume.min())
    for k in range(volume.shape[2]):
        delta = geo.positions[k] - geo.positions[0]
        shift = (delta @ geo.row_dir / geo.pixel_spacing[0], delta @ geo.col_dir / geo.pixel_spacing[1])
        out[:, :, k] = ndimage.shift(volume[:, :, k], shift, order=1, mode="constant", cval=fill)
    return out


def regular_offsets(offsets: np.ndarray, step: float) -> np.ndarray:
    count = int(np.floor((offsets[-1] - offsets[0]) / step + 1e-6)) + 1
    return offsets[0] + step * np.arange(count)


def resample_along_normal(volume: np.ndarray, offsets: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Linear interpolation of (X, Y, Z) slices at ``offsets`` onto ``targets`` (both ascending, mm)."""
    idx = np.clip(np.searchsorted(offsets, targets, side="right") - 1, 0, len(offsets) - 2)
    lo, hi = offsets[idx], offsets[idx + 1]
    weight = np.clip((targets - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return volume[:, :, idx] * (1 - weight) + volume[:, :, idx + 1] * weight
