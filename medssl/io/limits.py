"""Safety limits for reading untrusted scans: sizes and counts are checked before anything
large is allocated or decompressed, so a hostile or broken file fails fast with
``LimitExceededError`` instead of exhausting memory or hanging; physical bounds make an
implausible geometry a ``GeometryError`` instead of a silently wrong read."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

import numpy as np

from medssl.errors import GeometryError, LimitExceededError

GiB = 1024**3
MAX_BYTES_ENV = "MEDSSL_READ_MAX_BYTES"
SKIP_CORRUPT_ENV = "MEDSSL_SKIP_CORRUPT_SLICES"


def _env_max_bytes() -> int:
    value = os.environ.get(MAX_BYTES_ENV, "").strip().upper()
    units = {"G": GiB, "M": 1024**2, "K": 1024}
    try:
        return int(float(value[:-1]) * units[value[-1]]) if value and value[-1] in units else int(value or 8 * GiB)
    except ValueError:
        return 8 * GiB


def _env_skip() -> bool:
    return os.environ.get(SKIP_CORRUPT_ENV, "").strip().lower() in {"1", "true", "yes"}


@dataclass(frozen=True)
class ReadLimits:
    """Upper bounds applied by ``read_scan`` / ``probe``. Raise them explicitly for big data,
    e.g. ``read_scan(path, limits=ReadLimits(max_bytes=32 * GiB))``. A plain dataclass, not a
    config model: every command that reads a scan imports it, and pydantic would add a tenth
    of a second to each start."""

    max_files: int = 100_000  # files walked in one folder tree
    max_depth: int = 64  # folder levels walked below the given folder
    max_file_bytes: int = 2 * GiB  # size of one file or zip member
    max_zip_members: int = 20_000  # entries in one zip archive
    max_total_bytes: int = 8 * GiB  # uncompressed bytes of one zip
    max_ratio: float = 200.0  # uncompressed/compressed size of a zip member (above 1)
    max_voxels: int = 2**31  # voxels of one volume (2**31 = 8 GiB as float32)
    max_dim: int = 16_384  # voxels along any one axis
    # memory one read may allocate, estimated from the headers before anything is
    # decompressed; default 8 GiB (suits a 24 GiB machine), or $MEDSSL_READ_MAX_BYTES (e.g. 16G)
    max_bytes: int = field(default_factory=_env_max_bytes)
    min_spacing_mm: float = 0.01  # smallest voxel spacing or slice step accepted
    max_spacing_mm: float = 100.0  # largest voxel spacing or slice step accepted
    max_extent_mm: float = 3000.0  # largest extent of a volume along any axis (size x spacing)
    # read a DICOM series without its unreadable files (listed in Scan.meta) instead of
    # refusing it; default $MEDSSL_SKIP_CORRUPT_SLICES=1
    skip_corrupt_slices: bool = field(default_factory=_env_skip)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "bool":
                if not isinstance(value, bool):
                    raise ValueError(f"ReadLimits.{f.name} must be true or false, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"ReadLimits.{f.name} must be a positive number, got {value!r}")
            if f.type == "int":
                if not float(value).is_integer():
                    raise ValueError(f"ReadLimits.{f.name} must be a whole number, got {value!r}")
                object.__setattr__(self, f.name, int(value))
        if self.max_ratio <= 1:
            raise ValueError(f"ReadLimits.max_ratio must be above 1, got {self.max_ratio!r}")
        if self.min_spacing_mm >= self.max_spacing_mm:
            raise ValueError("min_spacing_mm must be below max_spacing_mm")


DEFAULT_LIMITS = ReadLimits()


def raise_hint(field: str) -> str:
    """How to raise one limit, for error messages."""
    env = f" or ${MAX_BYTES_ENV}" if field == "max_bytes" else ""
    return f"if the input is genuine, raise ReadLimits.{field}{env}"


def check_extent(sizes: tuple[int, ...], spacings: tuple[float, ...], what: str, name: str,
                 limits: ReadLimits) -> None:
    """A volume longer than ``limits.max_extent_mm`` along an axis (3 m: longer than any
    patient, whole-body scans included) has a wrong spacing, even when each spacing alone is
    within bounds (PixelSpacing 0.02 x 90 mm over 256 columns: 23 m)."""
    for axis, (size, spacing) in enumerate(zip(sizes, spacings)):
        if size * spacing > limits.max_extent_mm:
            raise GeometryError(f"{what}: {size} voxels x {spacing:.4g} mm along axis {axis} span "
                                f"{size * spacing / 1000:.3g} m, physically implausible (at most "
                                f"{limits.max_extent_mm:g} mm, ReadLimits.max_extent_mm)", source=name)  # fmt: skip


def check_budget(needed: int, what: str, name: str, limits: ReadLimits) -> None:
    """Refuse, before allocating, a read that would need more than ``limits.max_bytes``."""
    if needed > limits.max_bytes:
        raise LimitExceededError(f"{what} needs about {needed / GiB:.2f} GiB of memory, above the read budget "
                                 f"ReadLimits.max_bytes = {limits.max_bytes / GiB:.2f} GiB; "
                                 f"{raise_hint('max_bytes')}", source=name)  # fmt: skip


def allocate_volume(shape: tuple[int, int, int], where: str, order: str = "C") -> np.ndarray:
    """An empty float32 volume; running out of memory is a LimitExceededError (the input is
    fine, this machine is too small for it), not an internal error."""
    try:
        return np.empty(shape, dtype=np.float32, order=order)  # type: ignore[call-overload]
    except MemoryError as err:
        size = 4 * int(np.prod(shape, dtype=np.int64)) / GiB
        raise LimitExceededError(f"not enough free memory for a {shape} float32 volume ({size:.2f} GiB); free "
                                 "memory, or lower ReadLimits.max_bytes to refuse such reads from the headers",
                                 source=where) from err  # fmt: skip


def all_finite(array: np.ndarray) -> bool:
    """No NaN or infinity, without a boolean mask the size of the volume (min/max propagate NaN)."""
    return bool(array.size == 0 or (np.isfinite(array.min()) and np.isfinite(array.max())))
