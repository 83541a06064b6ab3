"""NIfTI reading (validated, limits checked before allocating, corruption found at read
time) and writing (geometry kept in both qform and sform, atomic)."""

from __future__ import annotations

import gzip
import logging
import re
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medssl.atomic import atomic_path
from medssl.errors import (
    CorruptFileError,
    GeometryError,
    InputError,
    LimitExceededError,
    NotAScanError,
    UnsupportedInputError,
)
from medssl.io.limits import ReadLimits
from medssl.io.scan import Scan

log = logging.getLogger(__name__)

QSFORM_ERROR_MM = 1.0  # qform/sform placing a corner further apart than this is an error
QSFORM_WARN_MM = 1e-3
CT_MIN_HU = -500.0  # air reads about -1000 HU; no MR magnitude image goes this low
MR_TOKENS = {"mr", "mri", "t1", "t2", "t1w", "t2w", "flair", "dwi", "adc", "pd", "swi"}
LABEL_TOKENS = {"label", "labels", "seg", "segmentation", "mask", "masks"}
CHUNK = 16 * 1024 * 1024


def load_header(path: Path, limits: ReadLimits) -> nib.Nifti1Image:
    """The image with its header parsed and sizes checked; no voxel data read yet."""
    name = path.name
    try:
        size = path.stat().st_size
    except OSError as err:
        raise NotAScanError(f"cannot read file ({err.__class__.__name__})", source=name) from err
    if size == 0:
        raise CorruptFileError("empty file (0 bytes)", source=name)
    try:
        img = nib.load(str(path))
    except nib.filebasedimages.ImageFileError as err:
        gz = "gzip" in str(err)
        raise (CorruptFileError if gz else NotAScanError)(
            "not a gzip stream; the .nii.gz file is corrupt or not NIfTI" if gz else "not a NIfTI file",
            source=name) from err  # fmt: skip
    except (OSError, EOFError, zlib.error, ValueError, nib.spatialimages.HeaderDataError) as err:
        raise CorruptFileError(f"NIfTI header cannot be read ({err.__class__.__name__})", source=name) from err
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise UnsupportedInputError(f"{type(img).__name__} files are not supported; convert to NIfTI", source=name)
    check_volume_shape(img.shape, name, limits)
    dtype = img.header.get_data_dtype()
    if dtype.kind not in "iufb":
        label = img.header.get_value_label("datatype")
        raise UnsupportedInputError(f"colour/complex/structured voxel type {label} ({dtype.str}); medssl reads "
                                    "one real-valued channel per voxel (convert to a scalar image)",
                                    source=name)  # fmt: skip
    return img


def check_volume_shape(shape: tuple[int, ...], name: str, limits: ReadLimits) -> tuple[int, int, int]:
    if any(int(d) <= 0 for d in shape):
        raise CorruptFileError(f"header declares a non-positive size {tuple(shape)}", source=name)
    if max(shape) > limits.max_dim or int(np.prod(shape, dtype=np.float64)) > limits.max_voxels:
        raise LimitExceededError(f"header declares {tuple(shape)} voxels, beyond the read limits (max_dim "
                                 f"{limits.max_dim}, max_voxels {limits.max_voxels})", source=name)  # fmt: skip
    dims = list(shape)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) > 3:
        raise UnsupportedInputError(f"{len(dims)}D image {tuple(shape)} (time series or multi-channel); "
                                    "medssl reads single 3D volumes", source=name)  # fmt: skip
    if len(dims) < 3 or dims[2] == 1:
        raise UnsupportedInputError(f"2D image {tuple(shape)}; medssl reads 3D volumes", source=name)
    return dims[0], dims[1], dims[2]


def _read_all(path: Path, expected: int, cap: int) -> bytes:
    """Whole file, decompressed if gzip (which verifies the stream's CRC), at most ``cap`` bytes."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    chunks, total = [], 0
    try:
        with opener(path, "rb") as f:
            while chunk := f.read(CHUNK):
                total += len(chunk)
                if total > cap:
                    raise LimitExceededError(f"file holds far more data than its header declares "
                                             f"({expected} bytes)", source=path.name)  # fmt: skip
                chunks.append(chunk)
    except (OSError, EOFError, zlib.error) as err:
        raise CorruptFileError(f"compressed data is truncated or corrupt ({err.__class__.__name__}); "
                               "re-export or re-download the file", source=path.name) from err  # fmt: skip
    if total < expected:
        raise CorruptFileError(f"file is truncated: {total} of {expected} bytes", source=path.name)
    return b"".join(chunks)


def read_nifti(path: Path, *, limits: ReadLimits, case_id: str) -> Scan:
    img = load_header(path, limits)
    header = img.header
    shape3 = check_volume_shape(img.shape, path.name, limits)
    offset = int(img.dataobj.offset)
    expected = offset + int(np.prod(img.shape, dtype=np.int64)) * header.get_data_dtype().itemsize
    raw = _read_all(path, expected, cap=expected + 64 * 1024 * 1024)
    try:
        data = type(img).from_bytes(raw).get_fdata(dtype=np.float32)
    except Exception as err:  # noqa: BLE001 - nibabel raises many types on broken data
        raise CorruptFileError(f"voxel data cannot be read ({err.__class__.__name__})", source=path.name) from err
    del raw
    data = data.reshape(shape3, order="F")  # nibabel arrays are Fortran-ordered; avoid a copy
    if not np.isfinite(data).all():
        raise InputError("volume holds NaN or infinite values", source=path.name, code="non_finite")
    affine, geo_meta = _checked_affine(img, path.name)
    modality, guessed = guess_modality(path, data)
    meta: dict[str, Any] = {"format": "nifti", "source_dtype": str(header.get_data_dtype()),
                            "modality_guessed": guessed, **geo_meta}  # fmt: skip
    return Scan(array=data, affine=affine, modality=modality, source=path.name, case_id=case_id, meta=meta)


def _corners(shape: tuple[int, ...]) -> np.ndarray:
    idx = np.array([[i, j, k, 1] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    return idx.T.astype(np.float64)


def _checked_affine(img: nib.Nifti1Image, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    """nibabel's affine (sform first), after checking that qform and sform agree."""
    header = img.header
    sform, scode = header.get_sform(coded=True)
    qform, qcode = header.get_qform(coded=True)
    meta: dict[str, Any] = {"qform_code": int(qcode), "sform_code": int(scode)}
    if scode and qcode:
        corners = _corners(img.shape)
        gap = float(np.linalg.norm((sform @ corners - qform @ corners)[:3], axis=0).max())
        s_axes, q_axes = "".join(nib.aff2axcodes(sform)), "".join(nib.aff2axcodes(qform))
        if s_axes != q_axes or gap > QSFORM_ERROR_MM:
            raise GeometryError(f"qform ({q_axes}) and sform ({s_axes}) disagree by up to {gap:.3g} mm; "
                                "fix the header (set one of them to code 0 or make them equal)",
                                source=name)  # fmt: skip
        if gap > QSFORM_WARN_MM:
            log.warning("%s: qform and sform differ by up to %.3g mm; using the sform", name, gap)
            meta["qform_sform_gap_mm"] = round(gap, 6)
    elif not scode and not qcode:
        log.warning("%s: neither qform nor sform is set; orientation is unknown (assuming RAS)", name)
        meta["orientation_unknown"] = True
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise GeometryError("affine is singular or not finite", source=name)
    return affine, meta


def guess_modality(path: Path, data: np.ndarray) -> tuple[str, bool]:
    """NIfTI has no modality field: HU-like intensities (air at about -1000) -> CT, MR-ish
    file or folder names (mr, t1, flair, ...) -> MR, label-like file names -> OT, else OT.
    ``data``: the volume or a slice."""
    if float(data.min()) <= CT_MIN_HU:
        return "CT", True
    if set(re.split(r"[^a-z0-9]+", path.name.lower())) & LABEL_TOKENS:
        return "OT", True
    tokens = set(re.split(r"[^a-z0-9]+", f"{path.parent.name} {path.name}".lower()))
    if tokens & MR_TOKENS:
        return "MR", True
    return ("CT", True) if "ct" in tokens else ("OT", True)


def write_nifti(array: np.ndarray, affine: np.ndarray, path: str | Path) -> Path:
    """``write_scan`` for a bare (X, Y, Z) array and its voxel -> RAS+ affine (e.g. a label map)."""
    return write_scan(Scan(array=array, affine=affine, modality="OT", source="", case_id=""), path)


def write_scan(scan: Scan, path: str | Path) -> Path:
    """Save ``scan.array`` with ``scan.affine`` as NIfTI (.nii or .nii.gz), qform and sform
    both set (code 1, scanner), atomically (temp file + os.replace); a sheared affine, which a
    qform cannot hold, is written as sform only, so the file always reads back with
    ``read_scan``. Integer-valued float volumes that fit int16 are stored as int16 (lossless)."""
    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise InputError("output must end in .nii or .nii.gz", source=path.name, code="bad_output")
    array = np.asarray(scan.array)
    if array.dtype.kind == "f" and array.size and np.array_equal(array, np.round(array)) \
            and array.min() >= -32768 and array.max() <= 32767:  # fmt: skip
        array = array.astype(np.int16)
    affine = np.asarray(scan.affine, dtype=np.float64)
    img = nib.Nifti1Image(array, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    corners = _corners((*array.shape[:3], 1, 1, 1)[:3])
    gap = float(np.linalg.norm((img.get_qform() @ corners - affine @ corners)[:3], axis=0).max())
    if gap > QSFORM_WARN_MM:  # a sheared affine: the qform (rotation + zooms only) cannot hold it
        log.warning("%s: affine is not a rotation and scaling (qform would be %.3g mm off); "
                    "writing it as sform only", path.name, gap)  # fmt: skip
        img.set_qform(None, code=0)
    img.header.set_xyzt_units("mm", "sec")
    with atomic_path(path, ".nii.gz" if path.name.lower().endswith(".gz") else ".nii") as tmp:
        nib.save(img, str(tmp))
    return path
