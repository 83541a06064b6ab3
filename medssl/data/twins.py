"""The same scan stored twice (a DICOM series and its NIfTI conversion, or a copy) counted
once: a pixel fingerprint of the scan in RAS orientation, independent of the file format.

Two files are twins when they hold the same voxel values (rounded to integers, as HU are)
on the same grid shape and spacing. A sweep uses this so that no test subject's twin sits
in the pretraining pool."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from medssl.errors import InputError
from medssl.io import read_scan, to_canonical

log = logging.getLogger("medssl.data")


def pixel_fingerprint(path: str | Path, series: str | None = None) -> str:
    """sha256 (hex, 16 characters) of shape, spacing (0.01 mm) and integer voxel values in RAS."""
    scan = to_canonical(read_scan(path, series_uid=series))
    spacing = np.round(np.linalg.norm(scan.affine[:3, :3], axis=0), 2)
    h = hashlib.sha256()
    h.update(repr((tuple(scan.array.shape), tuple(spacing.tolist()))).encode())
    h.update(np.ascontiguousarray(np.rint(scan.array).astype(np.int32)).tobytes())
    return h.hexdigest()[:16]


def fingerprints(paths: Iterable[tuple[Path, str | None]]) -> dict[Path, str | None]:
    """Fingerprint per path; None (logged by file name) when the scan cannot be read."""
    out: dict[Path, str | None] = {}
    for path, series in paths:
        try:
            out[path] = pixel_fingerprint(path, series)
        except InputError as err:
            log.warning("%s: cannot fingerprint ([%s] %s)", Path(path).name, err.code, err.reason)
            out[path] = None
    return out


def unique_by_pixels(prints: dict[Path, str | None]) -> tuple[list[Path], dict[Path, Path]]:
    """(one path per distinct scan, in input order; twin -> the path kept in its place)."""
    kept: dict[str, Path] = {}
    twins: dict[Path, Path] = {}
    for path, fp in prints.items():
        if fp is None:
            continue
        if fp in kept:
            twins[path] = kept[fp]
        else:
            kept[fp] = path
    return list(kept.values()), twins
