"""Safety limits for reading untrusted scans: sizes and counts are checked before anything
large is allocated or decompressed, so a hostile or broken file fails fast with
``LimitExceededError`` instead of exhausting memory or hanging; physical bounds make an
implausible geometry a ``GeometryError`` instead of a silently wrong read."""

from __future__ import annotations

import os

import numpy as np
from pydantic import Field, model_validator

from medssl.config import StrictModel
from medssl.errors import LimitExceededError

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


class ReadLimits(StrictModel):
    """Upper bounds applied by ``read_scan`` / ``probe``. Raise them explicitly for big data,
    e.g. ``read_scan(path, limits=ReadLimits(max_bytes=32 * GiB))``."""

    max_files: int = Field(100_000, gt=0, description="files walked in one folder tree")
    max_depth: int = Field(64, gt=0, description="folder levels walked below the given folder")
    max_file_bytes: int = Field(2 * GiB, gt=0, description="size of one file or zip member")
    max_zip_members: int = Field(20_000, gt=0, description="entries in one zip archive")
    max_total_bytes: int = Field(8 * GiB, gt=0, description="uncompressed bytes of one zip")
    max_ratio: float = Field(200.0, gt=1, description="uncompressed/compressed size of a zip member")
    max_voxels: int = Field(2**31, gt=0, description="voxels of one volume (2**31 = 8 GiB as float32)")
    max_dim: int = Field(16_384, gt=0, description="voxels along any one axis")
    max_bytes: int = Field(default_factory=_env_max_bytes, gt=0, description="memory one read may allocate, estimated from the "
                           "headers before anything is decompressed; default 8 GiB (suits a 24 GiB machine), "
                           f"or ${MAX_BYTES_ENV} (e.g. 16G)")  # fmt: skip
    min_spacing_mm: float = Field(0.01, gt=0, description="smallest voxel spacing or slice step accepted")
    max_spacing_mm: float = Field(100.0, gt=0, description="largest voxel spacing or slice step accepted")
    skip_corrupt_slices: bool = Field(default_factory=_env_skip, description="read a DICOM series without its unreadable files "
                                      "(listed in Scan.meta) instead of refusing it; default "
                                      f"${SKIP_CORRUPT_ENV}=1")  # fmt: skip

    @model_validator(mode="after")
    def _bounds_ordered(self) -> "ReadLimits":
        if self.min_spacing_mm >= self.max_spacing_mm:
            raise ValueError("min_spacing_mm must be below max_spacing_mm")
        return self


DEFAULT_LIMITS = ReadLimits()


def raise_hint(field: str) -> str:
    """How to raise one limit, for error messages."""
    env = f" or ${MAX_BYTES_ENV}" if field == "max_bytes" else ""
    return f"if the input is genuine, raise ReadLimits.{field}{env}"


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
