"""The one entry point for reading scans, plus canonical reorientation and case ids."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset

from medssl.errors import InputError, NotAScanError
from medssl.io.dicom_reader import read_dicom_series
from medssl.io.limits import ReadLimits
from medssl.io.nifti import read_nifti
from medssl.io.notes import held_notes
from medssl.io.path_privacy import holds_patient_data, pseudonym
from medssl.io.scan import Scan
from medssl.io.discovery import is_nifti
from medssl.io.sources import walk_folder

_SUFFIXES = (".nii.gz", ".nii", ".zip", ".dcm", ".dicom", ".ima")


def read_scan(path: str | Path, *, series_uid: str | None = None, allow_resample: bool = False,
              reveal_phi: bool = False, limits: ReadLimits | None = None) -> Scan:  # fmt: skip
    """Read a NIfTI file, a folder holding DICOM files (the largest image series unless
    ``series_uid``, a full SeriesInstanceUID or its short hash, says otherwise), or a
    ``.zip`` of a DICOM series (read in memory).

    Returns a ``Scan``: ``array`` (X, Y, Z) float32 (HU for CT), ``affine`` voxel -> RAS+ mm.
    Raises ``InputError`` subclasses naming the problem and the file, never the patient.
    ``allow_resample`` resamples uneven slice spacing or gantry tilt onto a regular grid
    instead of raising ``GeometryError``. ``reveal_phi`` fills ``scan.phi``."""
    with held_notes():
        return _read_scan(Path(path), series_uid, allow_resample, reveal_phi, limits or ReadLimits())[0]


def read_scan_and_datasets(path: str | Path, *, series_uid: str | None = None, allow_resample: bool = False,
                           limits: ReadLimits | None = None) -> tuple[Scan, list[Dataset] | None]:  # fmt: skip
    """``read_scan``, plus, for a DICOM input, the chosen series' datasets in slice order
    without pixel data (as ``read_dicom_datasets`` gives them, for a DICOM SEG) from the same
    read, so the files are not read again; None for NIfTI."""
    with held_notes():
        return _read_scan(Path(path), series_uid, allow_resample, False, limits or ReadLimits(), full_headers=True)


def _read_scan(path: Path, series_uid: str | None, allow_resample: bool, reveal_phi: bool,
               limits: ReadLimits, full_headers: bool = False) -> tuple[Scan, list[Dataset] | None]:  # fmt: skip
    if not path.exists():
        raise InputError("no such file or folder", source=path.name, code="not_found")
    case_id = case_id_for(path)
    if path.is_file() and is_nifti(path.name):
        return read_nifti(path, limits=limits, case_id=case_id), None
    members = None
    if path.is_dir():
        members = walk_folder(path, limits, include_nifti=True)
        niftis = [m.path for m in members if is_nifti(m.name) and m.path is not None]
        if niftis and len(niftis) == len(members):
            if len(niftis) > 1:
                raise NotAScanError(f"folder holds {len(niftis)} NIfTI files; pass one of them", source=path.name)
            return read_nifti(niftis[0], limits=limits, case_id=case_id_for(niftis[0])), None
        members = [m for m in members if not is_nifti(m.name)]
    return read_dicom_series(path, series_uid=series_uid, allow_resample=allow_resample, reveal_phi=reveal_phi,
                             limits=limits, case_id=case_id, members=members, full_headers=full_headers)  # fmt: skip


def case_id_for(path: str | Path, *, patient: Iterable[str] = (), pseudonymize: bool = False) -> str:
    """PHI-free id from the file or folder name (never from DICOM tags): extension and an
    nnU-Net channel suffix ``_0000`` removed, characters outside [A-Za-z0-9._-] replaced.

    A name holding the scan's own patient tokens (``patient``, from
    ``medssl.io.path_privacy.read_patient_tokens``), or any name with ``pseudonymize``,
    gives its pseudonym ``case-<hash>`` instead (``medssl.io.path_privacy``)."""
    raw = Path(path).name
    if pseudonymize or holds_patient_data(raw, patient):
        return pseudonym(raw)
    name = raw
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    name = re.sub(r"_0000$", "", name)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "case"
    return name[:128]


def to_canonical(scan: Scan) -> Scan:
    """The same scan with voxel axes reordered/flipped to the closest RAS (as nibabel's
    ``as_closest_canonical``); the world positions of all voxels are unchanged."""
    start = nib.orientations.io_orientation(scan.affine)
    transform = nib.orientations.ornt_transform(start, nib.orientations.axcodes2ornt("RAS"))
    array = np.ascontiguousarray(nib.orientations.apply_orientation(scan.array, transform))
    affine = scan.affine @ nib.orientations.inv_ornt_aff(transform, scan.array.shape)
    return dataclasses.replace(scan, array=array, affine=affine)
