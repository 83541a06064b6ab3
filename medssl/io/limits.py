"""Safety limits for reading untrusted scans: sizes and counts are checked before anything
large is allocated or decompressed, so a hostile or broken file fails fast with
``LimitExceededError`` instead of exhausting memory or hanging."""

from __future__ import annotations

from pydantic import Field

from medssl.config import StrictModel

GiB = 1024**3


class ReadLimits(StrictModel):
    """Upper bounds applied by ``read_scan`` / ``probe``. Raise them explicitly for big data."""

    max_files: int = Field(100_000, gt=0, description="files walked in one folder tree")
    max_file_bytes: int = Field(2 * GiB, gt=0, description="size of one file or zip member")
    max_zip_members: int = Field(20_000, gt=0, description="entries in one zip archive")
    max_total_bytes: int = Field(8 * GiB, gt=0, description="uncompressed bytes of one zip")
    max_ratio: float = Field(200.0, gt=1, description="uncompressed/compressed size of a zip member")
    max_voxels: int = Field(2**31, gt=0, description="voxels of one volume (2**31 = 8 GiB as float32)")
    max_dim: int = Field(16_384, gt=0, description="voxels along any one axis")


DEFAULT_LIMITS = ReadLimits()
