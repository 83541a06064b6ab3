"""What a click, a wheel turn, a drag or a measurement in a view does, as pure functions of
the viewer state (no Streamlit): the browser sends positions as fractions of the drawn
image, these turn them into voxels, slice numbers, window values and millimetres.

Slice numbers are 1-based everywhere the user sees them (sliders, captions, read-out);
voxel indices ``ijk`` of the canonical RAS volume are 0-based in code only."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .render import PLANE_AXIS, pixel_spacing
from .windowing import CT_PRESETS

WINDOW_PX = 250.0  # dragging this many pixels changes the window by its own width


def slice_grid(plane: str, shape: Sequence[int]) -> tuple[int, int]:
    """(rows, cols) of a view's slice of a canonical (X, Y, Z) volume (``render.extract_slice``)."""
    nx, ny, nz = (int(s) for s in shape[:3])
    return {"axial": (ny, nx), "coronal": (nz, nx), "sagittal": (nz, ny)}[plane]


def _clamp(value: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, value))


def voxel_at(plane: str, fx: float, fy: float, ijk: Sequence[int], shape: Sequence[int]) -> tuple[int, int, int]:
    """The crosshair after a click at (fx, fy), fractions of the view's width and height: the
    inverse of ``render.crosshair_pixel``; the plane's own axis keeps its index."""
    rows, cols = slice_grid(plane, shape)
    r = _clamp(math.floor(float(fy) * rows), 0, rows - 1)
    c = _clamp(math.floor(float(fx) * cols), 0, cols - 1)
    nx, ny, nz = (int(s) for s in shape[:3])
    i, j, k = (int(v) for v in ijk)
    if plane == "axial":
        return nx - 1 - c, ny - 1 - r, k
    if plane == "coronal":
        return nx - 1 - c, j, nz - 1 - r
    if plane == "sagittal":
        return i, ny - 1 - c, nz - 1 - r
    raise ValueError(f"unknown plane {plane!r}")


def distance_mm(plane: str, p1: Sequence[float], p2: Sequence[float], shape: Sequence[int], spacing: Sequence[float]) -> float:
    """In-plane distance in mm between two points given as (fx, fy) fractions of the view."""
    rows, cols = slice_grid(plane, shape)
    row_mm, col_mm = pixel_spacing(spacing, plane)
    dx = (float(p2[0]) - float(p1[0])) * cols * col_mm
    dy = (float(p2[1]) - float(p1[1])) * rows * row_mm
    return math.hypot(dx, dy)


def dragged_window(width: float, level: float, dx: float, dy: float) -> tuple[float, float]:
    """Window after a drag of (dx, dy) screen pixels: right widens, down raises the level;
    the step scales with the width so both bone and brain windows are easy to tune."""
    step = max(float(width), 10.0) / WINDOW_PX
    return max(1.0, round(float(width) + dx * step, 1)), round(float(level) + dy * step, 1)


def apply_event(event: Mapping[str, Any], slices: Mapping[str, int], window: tuple[float, float],
                shape: Sequence[int], spacing: Sequence[float]) -> dict[str, Any]:  # fmt: skip
    """State changes for one event from a view. ``slices``: plane -> 1-based slice number;
    returns {"slices": {...}, "window": (w, l), "measure": {...}} with only what changed.
    Unknown or malformed events change nothing."""
    plane = event.get("plane")
    kind = event.get("type")
    if plane not in PLANE_AXIS:
        return {}
    try:
        if kind == "click":
            ijk = tuple(int(slices[p]) - 1 for p in ("sagittal", "coronal", "axial"))
            i, j, k = voxel_at(plane, float(event["fx"]), float(event["fy"]), ijk, shape)
            return {"slices": {"sagittal": i + 1, "coronal": j + 1, "axial": k + 1}}
        if kind == "scroll":
            n = int(shape[PLANE_AXIS[plane]])
            return {"slices": {plane: _clamp(int(slices[plane]) + int(event["delta"]), 1, n)}}
        if kind == "window":
            return {"window": dragged_window(*window, float(event["dx"]), float(event["dy"]))}
        if kind == "preset":
            presets = list(CT_PRESETS.values())
            n = int(event["n"])
            return {"window": presets[n - 1]} if 1 <= n <= len(presets) else {}
        if kind == "measure":
            p1, p2 = [float(v) for v in event["p1"][:2]], [float(v) for v in event["p2"][:2]]
            mm = distance_mm(plane, p1, p2, shape, spacing)
            return {"measure": {"plane": plane, "slice": int(slices[plane]), "p1": p1, "p2": p2, "mm": mm}}
    except (KeyError, TypeError, ValueError, IndexError):
        return {}
    return {}
