"""Slice geometry of a DICOM series: sort by ImagePositionPatient projected on the slice
normal (never by file name), validate spacing / tilt / orientation, and build the affine.

Affine (RAS+ mm, see ``medssl.io.scan``): voxel i runs along the columns of a slice
(ImageOrientationPatient[0:3], PixelSpacing[1]), j along its rows (IOP[3:6],
PixelSpacing[0]), k along the sorted slices; DICOM LPS+ becomes RAS+ by negating x and y."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from medssl.errors import CorruptFileError, GeometryError, UnsupportedInputError
from medssl.io.dicom_elements import optional_float, required_int, tag_float, tag_value
from medssl.io.limits import DEFAULT_LIMITS, ReadLimits
from medssl.io.notes import note

log = logging.getLogger(__name__)

ORIENTATION_TOL = 1e-3  # max difference between direction cosines of two slices
ORTHONORMAL_TOL = 1e-2  # IOP vectors this close to unit length and perpendicular are orthonormalised
SPACING_RTOL = 0.05  # a slice further than this (x step) from the fitted regular line counts as uneven
TILT_TOL_DEG = 0.1  # slice positions drifting sideways by more than this angle = gantry tilt
MAX_POSITION_MM = 1e9  # positions further out are garbage (and would overflow the sums below)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class StackGeometry:
    order: list[int]  # indices into the input list, sorted along the normal
    row_dir: np.ndarray  # IOP[0:3], LPS: direction of increasing column index (i)
    col_dir: np.ndarray  # IOP[3:6], LPS: direction of increasing row index (j)
    normal: np.ndarray
    pixel_spacing: tuple[float, float]  # (between columns = along i, between rows = along j)
    positions: np.ndarray  # (n, 3) LPS, in sorted order
    offsets: np.ndarray  # (n,) positions projected on the normal, ascending
    step: float  # slice step along the normal (mm): least-squares fit, or the median gap when uneven
    tilt_deg: float
    uneven: bool

    def affine(self, step: float | None = None, origin: np.ndarray | None = None) -> np.ndarray:
        """Voxel -> RAS+ mm for a regular, orthogonal grid starting at ``origin`` (LPS)."""
        lps = np.eye(4)
        lps[:3, 0] = self.row_dir * self.pixel_spacing[0]
        lps[:3, 1] = self.col_dir * self.pixel_spacing[1]
        lps[:3, 2] = self.normal * (self.step if step is None else step)
        lps[:3, 3] = self.positions[0] if origin is None else origin
        return LPS_TO_RAS @ lps


def _floats(ds: Dataset, keyword: str, n: int, where: str, *, positive: bool = False) -> np.ndarray:
    try:
        value = tag_value(ds, keyword)
        values = [value] if isinstance(value, (str, bytes, int, float)) else value
        arr = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        arr = np.zeros(0)
    if arr.shape != (n,) or not np.isfinite(arr).all():
        raise UnsupportedInputError(f"{keyword} is missing or malformed; cannot place the slices in space",
                                    source=where)  # fmt: skip
    if positive and (arr <= 0).any():
        raise CorruptFileError(f"{keyword} must be positive (a negative or zero spacing would mirror or "
                               "collapse the image); fix the header", source=where)  # fmt: skip
    return arr


def orthonormal_directions(row: np.ndarray, col: np.ndarray, series: str,
                           where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """ImageOrientationPatient's row and column cosines made exactly orthonormal (Gram-Schmidt,
    row kept, as ITK does), plus the slice normal. Rounded cosines in real headers are a little
    off; an affine built from them is sheared, which NIfTI's qform cannot hold."""
    if abs(np.linalg.norm(row) - 1) > ORTHONORMAL_TOL or abs(np.linalg.norm(col) - 1) > ORTHONORMAL_TOL \
            or abs(row @ col) > ORTHONORMAL_TOL:  # fmt: skip
        raise GeometryError(f"series {series}: ImageOrientationPatient is not orthonormal "
                            f"(tolerance {ORTHONORMAL_TOL})", source=where)  # fmt: skip
    row = row / np.linalg.norm(row)
    col = col - (col @ row) * row
    col = col / np.linalg.norm(col)
    return row, col, np.cross(row, col)


def check_spacing(value: float, what: str, limits: ReadLimits, series: str, where: str) -> None:
    """A voxel spacing or slice step outside the physical bounds of ``limits`` is a GeometryError."""
    if not limits.min_spacing_mm <= value <= limits.max_spacing_mm:
        raise GeometryError(f"series {series}: {what} of {value:.4g} mm is physically implausible (bounds "
                            f"{limits.min_spacing_mm:g} to {limits.max_spacing_mm:g} mm, "
                            "ReadLimits.min_spacing_mm / max_spacing_mm)", source=where)  # fmt: skip


def stack_geometry(datasets: list[Dataset], names: list[str], series: str, where: str = "",
                   limits: ReadLimits = DEFAULT_LIMITS) -> StackGeometry:  # fmt: skip
    """Sort and validate a series' slices (headers only). Raises GeometryError on mixed
    orientations, missing or duplicate slices, implausible spacing; flags uneven spacing and
    tilt for the caller."""
    where = where or series
    if len(datasets) < 2:
        raise UnsupportedInputError(f"series {series} holds a single 2D image; medssl reads 3D volumes "
                                    "(pass the folder holding the whole series)",
                                    source=names[0] if names else where)  # fmt: skip
    iops = np.stack([_floats(ds, "ImageOrientationPatient", 6, n) for ds, n in zip(datasets, names)])
    spread = np.abs(iops - iops[0]).max(axis=0).max()
    if spread > ORIENTATION_TOL:
        n_distinct = len({tuple(np.round(i, 3)) for i in iops})
        raise GeometryError(f"series {series}: slices have {n_distinct} different orientations "
                            "(mixed orientations); choose a single-orientation series", source=where)  # fmt: skip
    row_dir, col_dir, normal = orthonormal_directions(iops[0, :3], iops[0, 3:], series, where)

    sizes = {(required_int(ds, "Rows", n), required_int(ds, "Columns", n)) for ds, n in zip(datasets, names)}
    spacings = {tuple(np.round(_floats(ds, "PixelSpacing", 2, n, positive=True), 5))
                for ds, n in zip(datasets, names)}  # fmt: skip
    if len(sizes) > 1 or len(spacings) > 1:
        raise GeometryError(f"series {series}: slices differ in size or pixel spacing", source=where)
    row_spacing, col_spacing = _floats(datasets[0], "PixelSpacing", 2, names[0])  # (between rows, between columns)
    for value in (row_spacing, col_spacing):
        check_spacing(float(value), "PixelSpacing", limits, series, where)

    positions = np.stack([_floats(ds, "ImagePositionPatient", 3, n) for ds, n in zip(datasets, names)])
    with np.errstate(all="ignore"):
        offsets = positions @ normal
    if not np.isfinite(offsets).all() or np.abs(positions).max() > MAX_POSITION_MM:
        raise GeometryError(f"series {series}: ImagePositionPatient up to {np.abs(positions).max():.3g} mm from "
                            "the origin is implausible", source=where)  # fmt: skip
    order = [int(i) for i in np.argsort(offsets, kind="stable")]
    positions, offsets = positions[order], offsets[order]
    gaps = np.diff(offsets)
    if (gaps < 1e-3).any():
        raise UnsupportedInputError(f"series {series}: several slices share one position (several phases, "
                                    "echoes or duplicates?); split the series first", source=where)  # fmt: skip
    step = float(np.median(gaps))
    check_spacing(step, "slice step", limits, series, where)
    _check_missing(gaps, step, len(datasets), series, where)
    _check_counts([datasets[i] for i in order], series, where)
    step, uneven = _fitted_step(offsets, step)

    drift = positions[-1] - positions[0]
    tilt = float(np.degrees(np.arccos(np.clip(abs(drift @ normal) / np.linalg.norm(drift), -1, 1))))
    return StackGeometry(order, row_dir, col_dir, normal, (float(col_spacing), float(row_spacing)),
                         positions, offsets, step, tilt, uneven)  # fmt: skip


def _fitted_step(offsets: np.ndarray, median_step: float) -> tuple[float, bool]:
    """(step, uneven): positions are compared with the least-squares line through them, as
    ITK and dcm2niix do, so scanner jitter of a few hundredths of a mm passes while a slice
    off the regular grid by more than SPACING_RTOL x step is uneven (median step returned)."""
    k = np.arange(len(offsets), dtype=np.float64)
    slope, intercept = np.polyfit(k, offsets, 1)
    residual = np.abs(offsets - (intercept + slope * k)).max()
    if residual > SPACING_RTOL * slope:
        return median_step, True
    return float(slope), False


def _check_missing(gaps: np.ndarray, step: float, found: int, series: str, where: str) -> None:
    ratio = gaps / step
    multiples = np.round(ratio)
    missing = (multiples >= 2) & (np.abs(ratio - multiples) <= SPACING_RTOL * multiples)
    if missing.any():
        expected = int(round((gaps.sum()) / step)) + 1
        first = int(np.argmax(missing))
        raise GeometryError(
            f"series {series}: missing slices: expected {expected} at {step:.3g} mm steps, found {found} "
            f"(first gap after sorted slice {first}); add the missing files or choose another series",
            source=where,
        )


def _check_counts(datasets: list[Dataset], series: str, where: str) -> None:
    """A series shorter than its ImagesInAcquisition, or than its own InstanceNumber range
    (numbers running monotonically with position, at the smallest stride found) is missing
    slices; this also catches gaps that uneven spacing would hide from ``_check_missing``."""
    found = len(datasets)
    declared = {optional_float(ds, "ImagesInAcquisition") for ds in datasets}
    if len(declared) == 1 and (total := int(declared.pop() or 0)) > found:
        raise GeometryError(f"series {series}: missing slices: ImagesInAcquisition says {total}, found {found}; "
                            "add the missing files", source=where)  # fmt: skip
    try:
        numbers = np.array([tag_float(ds, "InstanceNumber") for ds in datasets], dtype=np.float64)
    except (TypeError, ValueError):
        return  # absent or malformed on some slice: nothing to check against
    steps = np.diff(numbers)
    if not (np.isfinite(numbers).all() and ((steps > 0).all() or (steps < 0).all())):
        return
    stride = float(np.abs(steps).min())
    if stride < 1:
        return
    span = int(round(abs(numbers[-1] - numbers[0]) / stride)) + 1
    if span > found:
        raise GeometryError(f"series {series}: missing slices: InstanceNumber runs {int(numbers.min())} to "
                            f"{int(numbers.max())} ({span} slices), found {found}", source=where)  # fmt: skip
    if stride == 1 and numbers.min() > 1:
        # scanners number a series from 1; a later start is the one trace a lost end slice leaves
        # (a series may legitimately start later, so this is a warning, not an error)
        note(log, logging.WARNING, "%s: series %s: InstanceNumber starts at %d, not 1: the slice(s) numbered "
             "below it may be missing", where, series, int(numbers.min()))
