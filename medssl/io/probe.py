"""Headers-only look at a file, folder or zip: fast enough to index thousands of files."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medssl.errors import CorruptFileError, InputError
from medssl.io.dicom_geometry import stack_geometry
from medssl.io.dicom_headers import PROBE_ELEMENTS, SeriesGroup, group_series
from medssl.io.limits import ReadLimits
from medssl.io.nifti import guess_modality, load_header
from medssl.io.notes import held_notes
from medssl.io.discovery import is_nifti
from medssl.io.sources import Member, read_zip, walk_folder


@dataclass(frozen=True)
class SeriesHeader:
    """One volume found by ``probe``: a NIfTI file or a DICOM series (PHI-free)."""

    series_key: str  # NIfTI: path relative to the probed folder; DICOM: the series' uid_hash
    modality: str
    shape: tuple[int, int, int] | None
    spacing: tuple[float, float, float] | None
    n_files: int
    uid_hash: str  # "" for NIfTI
    description: str  # always "": SeriesDescription is free text; read_scan(reveal_phi=True) shows it
    kind: str = "image"  # "image", "localizer", or a skipped non-image kind ("RTSTRUCT", ...)
    skipped_reason: str | None = None
    path: str = ""  # what to pass to read_scan (with series_uid=uid_hash for DICOM)
    format: str = "dicom"  # "dicom", "dicom-zip" or "nifti"
    first_file: str = ""  # DICOM: the series' first file by name, relative to the probed path ("x.zip:m" in a zip)


@dataclass
class ProbeResult:
    series: list[SeriesHeader] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (relative path, code, reason)

    @property
    def images(self) -> list[SeriesHeader]:
        return [s for s in self.series if s.kind == "image"]


def _nifti_header(path: Path, rel: str, limits: ReadLimits) -> SeriesHeader:
    head = load_header(path, limits)
    shape = head.shape
    spacing = tuple(round(float(v), 6) for v in np.linalg.norm(head.affine[:3, :3], axis=0))
    try:  # the first slice only (cheap even for .nii.gz): enough to tell HU from MR intensities
        with np.errstate(all="ignore"):
            first = np.asarray(head.img.dataobj[(slice(None), slice(None), 0, *([0] * (len(head.img.shape) - 3)))],
                               dtype=np.float32)  # fmt: skip
    except Exception as err:  # noqa: BLE001 - nibabel raises many types on broken data
        raise CorruptFileError(f"voxel data cannot be read ({err.__class__.__name__})", source=rel) from err
    modality, _ = guess_modality(path, first)
    return SeriesHeader(rel, modality, shape, spacing, 1, "", "", path=str(path), format="nifti")  # type: ignore[arg-type]


def _series_folder(group: SeriesGroup, fallback: str) -> str:
    paths = [str(m.path.parent) for m, _ in group.items if m.path is not None]
    return os.path.commonpath(paths) if len(paths) == len(group.items) else fallback


def _dicom_header(group: SeriesGroup, fallback: str, fmt: str, limits: ReadLimits) -> SeriesHeader:
    info = group.info()
    where = _series_folder(group, fallback)
    first = min(m.name for m, _ in group.items)
    spacing = None
    if group.kind == "image":
        try:
            geo = stack_geometry([ds for _, ds in group.items], [m.name for m, _ in group.items], group.uid_hash,
                                 limits=limits)  # fmt: skip
            spacing = (*geo.pixel_spacing, round(float(geo.step), 6))
        except InputError as err:
            return SeriesHeader(group.uid_hash, group.modality, info.shape, None, len(group.items),
                                group.uid_hash, "", "image", f"{err.code}: {err.reason}",
                                where, fmt, first)  # fmt: skip
    return SeriesHeader(group.uid_hash, group.modality, info.shape, spacing,  # type: ignore[arg-type]
                        len(group.items), group.uid_hash, "", group.kind,
                        group.skipped_reason, where, fmt, first)  # fmt: skip


def probe(path: str | Path, limits: ReadLimits | None = None, *, recursive: bool = True,
          include_nifti: bool = True) -> ProbeResult:  # fmt: skip
    """Headers only. A NIfTI file gives one entry; a folder gives every DICOM series (any
    depth, or its own files only when ``recursive`` is False) and every NIfTI file in it
    (unless ``include_nifti`` is False: a caller indexing them as inputs of their own); a
    zip gives its DICOM series. Unreadable files land in
    ``failed``; a DICOM series whose geometry is broken is listed with ``skipped_reason``."""
    with held_notes():
        return _probe(Path(path), limits or ReadLimits(), recursive, include_nifti)


def _probe(path: Path, limits: ReadLimits, recursive: bool, include_nifti: bool) -> ProbeResult:
    result = ProbeResult()
    if path.is_file() and is_nifti(path.name):
        try:
            result.series.append(_nifti_header(path, path.name, limits))
        except InputError as err:
            result.failed.append((path.name, err.code, err.reason))
        return result
    if path.is_dir():
        members = walk_folder(path, limits, include_nifti=include_nifti, recursive=recursive)
        fmt = "dicom"
    elif path.is_file():
        members = read_zip(path, limits) if path.suffix.lower() == ".zip" else \
            [Member(path.name, path.stat().st_size, path=path)]  # fmt: skip
        fmt = "dicom-zip" if path.suffix.lower() == ".zip" else "dicom"
    else:
        raise InputError("no such file or folder", source=path.name, code="not_found")
    dicom: list[Member] = []
    for member in members:
        if is_nifti(member.name) and member.path is not None:
            try:
                result.series.append(_nifti_header(member.path, member.name, limits))
            except InputError as err:
                result.failed.append((member.name, err.code, err.reason))
        else:
            dicom.append(member)
    found = group_series(dicom, limits, decode=PROBE_ELEMENTS)  # the headers are dropped after this
    result.failed.extend(found.failed)
    result.series.extend(_dicom_header(g, str(path), fmt, limits) for g in found.groups)
    return result
