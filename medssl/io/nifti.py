"""NIfTI reading (validated, limits checked before allocating, corruption found at read
time) and writing (geometry kept in both qform and sform, atomic)."""

from __future__ import annotations

import gzip
import logging
import re
import zlib
from dataclasses import dataclass
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
from medssl.io.limits import ReadLimits, all_finite, allocate_volume, check_budget, check_extent
from medssl.io.notes import note, quiet_library_loggers
from medssl.io.scan import Scan

log = logging.getLogger(__name__)
quiet_library_loggers()

QSFORM_ERROR_MM = 1.0  # qform/sform placing a corner further apart than this is an error
QSFORM_WARN_MM = 1e-3
CT_MIN_HU = -500.0  # air reads about -1000 HU; no MR magnitude image goes this low
MR_TOKENS = {"mr", "mri", "t1", "t2", "t1w", "t2w", "flair", "dwi", "adc", "pd", "swi"}
LABEL_TOKENS = {"label", "labels", "seg", "segmentation", "mask", "masks"}
CHUNK = 16 * 1024 * 1024
TRAILING_CAP = 64 * 1024 * 1024  # bytes after the voxels tolerated (and read, for gzip's CRC)
NIFTI1_SIZE, NIFTI2_SIZE = 348, 540
MAX_VOX_OFFSET = 2**31  # header + extensions beyond 2 GiB: not a real file
VALID_XFORM_CODES = range(6)  # unknown, scanner, aligned, talairach, mni, template


@dataclass
class NiftiHeader:
    """A NIfTI file's checked header: nibabel's image (no voxels read), the voxel -> RAS+
    affine after the qform/sform checks, the 3D shape and where the voxels start."""

    img: nib.Nifti1Image
    affine: np.ndarray
    shape: tuple[int, int, int]
    offset: int
    geo_meta: dict[str, Any]


def _raw_header(path: Path) -> tuple[np.ndarray, int]:
    """The header as stored (nibabel silently "fixes" several fields on load) and its size."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            block = f.read(NIFTI2_SIZE)
    except (OSError, EOFError, zlib.error) as err:
        raise CorruptFileError("not a gzip stream or a truncated one; the .nii.gz file is corrupt",
                               source=path.name) from err  # fmt: skip
    for size, cls in ((NIFTI1_SIZE, nib.Nifti1Header), (NIFTI2_SIZE, nib.Nifti2Header)):
        for order in "<>":
            if len(block) >= size and int(np.frombuffer(block[:4], f"{order}i4")[0]) == size:
                return np.frombuffer(block[:size], dtype=cls.template_dtype.newbyteorder(order))[0], size
    raise NotAScanError("not a NIfTI file (sizeof_hdr is neither 348 nor 540, or the file is truncated)",
                        source=path.name)  # fmt: skip


def _check_raw_header(raw: np.ndarray, size: int, name: str) -> None:
    """Fields nibabel would quietly change are errors: a silent fix is a silently wrong read."""
    magic = bytes(raw["magic"]).rstrip(b"\x00")
    if magic in (b"ni1", b"ni2"):
        raise UnsupportedInputError("header of a .hdr/.img pair; pass a single-file .nii or .nii.gz", source=name)
    if magic != (b"n+1" if size == NIFTI1_SIZE else b"n+2"):
        raise CorruptFileError("NIfTI magic is missing or does not match the header size", source=name)
    offset = float(raw["vox_offset"])
    if not (np.isfinite(offset) and offset == int(offset) and size + 4 <= offset <= MAX_VOX_OFFSET):
        shown = f"{offset:.6g}" if np.isfinite(offset) else str(offset)
        raise CorruptFileError(f"vox_offset {shown} is invalid: voxels must start after the {size}-byte header "
                               f"and its 4 extension bytes ({size + 4})", source=name)  # fmt: skip
    ndim = int(raw["dim"][0])
    if not 1 <= ndim <= 7:
        raise CorruptFileError(f"dim[0] = {ndim} is not a number of dimensions (1 to 7)", source=name)
    for code in ("qform_code", "sform_code"):
        if int(raw[code]) not in VALID_XFORM_CODES:
            raise GeometryError(f"{code} {int(raw[code])} is not a valid NIfTI code (0 to 5)", source=name)
    pixdim = np.asarray(raw["pixdim"], dtype=np.float64)
    for axis in range(1, min(ndim, 3) + 1):
        if not (np.isfinite(pixdim[axis]) and pixdim[axis] > 0):
            raise GeometryError(f"pixdim[{axis}] is {pixdim[axis]:.4g}: voxel sizes must be positive (a zero or "
                                "negative size would collapse or mirror the image); fix the header",
                                source=name)  # fmt: skip
    if pixdim[0] not in (-1.0, 0.0, 1.0):
        raise GeometryError(f"qfac (pixdim[0]) is {pixdim[0]:.4g}, not 1 or -1", source=name)


def load_header(path: Path, limits: ReadLimits) -> NiftiHeader:
    """The checked header; no voxel data read yet."""
    name = path.name
    try:
        size = path.stat().st_size
    except OSError as err:
        raise NotAScanError(f"cannot read file ({err.__class__.__name__})", source=name) from err
    if size == 0:
        raise CorruptFileError("empty file (0 bytes)", source=name)
    raw, header_size = _raw_header(path)
    _check_raw_header(raw, header_size, name)
    # nibabel reads the header extensions (everything before vox_offset) into memory on load
    check_budget(int(raw["vox_offset"]), "the header and its extensions", name, limits)
    try:
        img = nib.load(str(path))
    except nib.filebasedimages.ImageFileError as err:
        raise NotAScanError("not a NIfTI file", source=name) from err
    except MemoryError as err:
        raise CorruptFileError("NIfTI header extensions are implausibly large", source=name) from err
    except Exception as err:  # noqa: BLE001 - nibabel raises many types on broken headers
        raise CorruptFileError(f"NIfTI header cannot be read ({err.__class__.__name__})", source=name) from err
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise UnsupportedInputError(f"{type(img).__name__} files are not supported; convert to NIfTI", source=name)
    shape = check_volume_shape(img.shape, name, limits)
    dtype = img.header.get_data_dtype()
    if dtype.kind not in "iufb" or dtype.itemsize > 8:
        label = img.header.get_value_label("datatype")
        raise UnsupportedInputError(f"colour/complex/structured voxel type {label} ({dtype.str}); medssl reads "
                                    "one real-valued channel per voxel (convert to a scalar image)",
                                    source=name)  # fmt: skip
    affine, geo_meta = _checked_affine(img, name, limits)
    return NiftiHeader(img, affine, shape, int(raw["vox_offset"]), geo_meta)


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
    if len(dims) < 3 or 1 in dims[:3]:
        raise UnsupportedInputError(f"2D image {tuple(shape)}; medssl reads 3D volumes", source=name)
    return dims[0], dims[1], dims[2]


def _scaling(img: nib.Nifti1Image, name: str) -> tuple[float, float]:
    """scl_slope / scl_inter as nibabel reads them (slope 0 or not finite: none); on load
    nibabel moves them from the header into the image's data proxy."""
    slope, inter = getattr(img.dataobj, "slope", 1.0), getattr(img.dataobj, "inter", 0.0)
    slope, inter = float(1.0 if slope is None else slope), float(0.0 if inter is None else inter)
    if not (np.isfinite(slope) and np.isfinite(inter)):
        raise CorruptFileError("scl_slope / scl_inter are not finite", source=name)
    return slope, inter


def _read_volume(path: Path, head: NiftiHeader) -> np.ndarray:
    """(X, Y, Z) float32, scaled, decoded one z-slab at a time straight into the output, so a
    read holds the float32 volume and one slab. The rest of the file is read too (so gzip
    verifies its CRC) but not kept, and may exceed the data by at most TRAILING_CAP."""
    name, (x, y, z) = path.name, head.shape
    dtype = head.img.header.get_data_dtype()
    slope, inter = _scaling(head.img, name)
    out = allocate_volume(head.shape, name, order="F")
    buf = bytearray(x * y * dtype.itemsize)
    view = memoryview(buf)
    opener = gzip.open if name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f, np.errstate(over="ignore", invalid="ignore"):
            f.seek(head.offset)
            for k in range(z):
                got = 0
                while got < len(buf) and (n := f.readinto(view[got:])):
                    got += n
                if got < len(buf):
                    raise CorruptFileError(f"file is truncated: voxel data ends in slice {k} of {z}", source=name)
                slab = np.frombuffer(buf, dtype=dtype).reshape((x, y), order="F")
                out[:, :, k] = slab if (slope, inter) == (1.0, 0.0) else slab.astype(np.float64) * slope + inter
            trailing = 0
            while chunk := f.read(CHUNK):
                trailing += len(chunk)
                if trailing > TRAILING_CAP:
                    raise LimitExceededError("file holds far more data than its header declares", source=name)
    except (OSError, EOFError, zlib.error) as err:
        raise CorruptFileError(f"compressed data is truncated or corrupt ({err.__class__.__name__}); "
                               "re-export or re-download the file", source=name) from err  # fmt: skip
    return out


def read_nifti(path: Path, *, limits: ReadLimits, case_id: str) -> Scan:
    head = load_header(path, limits)
    header = head.img.header
    dtype = header.get_data_dtype()
    n = int(np.prod(head.shape, dtype=np.int64))
    slab = head.shape[0] * head.shape[1] * dtype.itemsize
    check_budget(n * 4 + slab + head.offset, f"reading {head.shape} voxels of {dtype} as float32", path.name, limits)
    data = _read_volume(path, head)
    if not all_finite(data):
        raise InputError("volume holds NaN or infinite values", source=path.name, code="non_finite")
    modality, guessed = guess_modality(path, data)
    meta: dict[str, Any] = {"format": "nifti", "source_dtype": str(dtype), "modality_guessed": guessed,
                            **head.geo_meta}  # fmt: skip
    return Scan(array=data, affine=head.affine, modality=modality, source=path.name, case_id=case_id, meta=meta)


def _corners(shape: tuple[int, ...]) -> np.ndarray:
    idx = np.array([[i, j, k, 1] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    return idx.T.astype(np.float64)


def _usable(affine: np.ndarray) -> bool:
    return bool(np.isfinite(affine).all() and abs(np.linalg.det(affine[:3, :3])) > 1e-12)


def _forms(header: nib.Nifti1Header, name: str) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """(sform, qform), each None when its code is 0; GeometryError when a coded one is unusable."""
    scode, qcode = int(header["sform_code"]), int(header["qform_code"])
    sform = qform = None
    if scode:
        sform = np.asarray(header.get_sform(), dtype=np.float64)
        if not _usable(sform):
            raise GeometryError("sform is singular or not finite; fix the header (or set sform_code 0)", source=name)
    if qcode:
        quat = np.array([header["quatern_b"], header["quatern_c"], header["quatern_d"], header["qoffset_x"],
                         header["qoffset_y"], header["qoffset_z"]], dtype=np.float64)  # fmt: skip
        try:
            qform = np.asarray(header.get_qform(), dtype=np.float64) if np.isfinite(quat).all() else None
        except Exception:  # noqa: BLE001 - nibabel: "invalid quaternion"
            qform = None
        if qform is None or not _usable(qform):
            raise GeometryError("qform is invalid (quaternion, offsets or voxel sizes); fix the header (or set "
                                "qform_code 0)", source=name)  # fmt: skip
    return sform, qform, {"qform_code": qcode, "sform_code": scode}


def _checked_affine(img: nib.Nifti1Image, name: str, limits: ReadLimits) -> tuple[np.ndarray, dict[str, Any]]:
    """nibabel's affine (sform first), after checking each form, that qform and sform agree,
    and that the voxel spacing is physically plausible."""
    sform, qform, meta = _forms(img.header, name)
    if sform is not None and qform is not None:
        corners = _corners(img.shape)
        gap = float(np.linalg.norm((sform @ corners - qform @ corners)[:3], axis=0).max())
        s_axes, q_axes = "".join(nib.aff2axcodes(sform)), "".join(nib.aff2axcodes(qform))
        if s_axes != q_axes or gap > QSFORM_ERROR_MM:
            raise GeometryError(f"qform ({q_axes}) and sform ({s_axes}) disagree by up to {gap:.3g} mm; "
                                "fix the header (set one of them to code 0 or make them equal)",
                                source=name)  # fmt: skip
        if gap > QSFORM_WARN_MM:
            note(log, logging.WARNING, "%s: qform and sform differ by up to %.3g mm; using the sform", name, gap)
            meta["qform_sform_gap_mm"] = round(gap, 6)
    affine = sform if sform is not None else qform
    if affine is None:
        note(log, logging.WARNING, "%s: neither qform nor sform is set; orientation is unknown (assuming RAS)", name)
        meta["orientation_unknown"] = True
        affine = np.asarray(img.affine, dtype=np.float64)
    if not _usable(affine):
        raise GeometryError("affine is singular or not finite", source=name)
    affine = _in_mm(affine, img.header, name, meta)
    spacings = np.linalg.norm(affine[:3, :3], axis=0)
    for axis, spacing in enumerate(spacings):
        if not limits.min_spacing_mm <= spacing <= limits.max_spacing_mm:
            raise GeometryError(f"voxel spacing along axis {axis} is {spacing:.4g} mm, physically implausible "
                                f"(bounds {limits.min_spacing_mm:g} to {limits.max_spacing_mm:g} mm, "
                                "ReadLimits.min_spacing_mm / max_spacing_mm)", source=name)  # fmt: skip
    check_extent(tuple(int(d) for d in img.shape[:3]), tuple(float(s) for s in spacings), "volume", name, limits)
    return affine, meta


# xyzt_units' spatial code -> millimetres per unit (0, unknown, is taken as mm, as nibabel does)
_MM_PER_UNIT = {1: 1000.0, 2: 1.0, 3: 0.001}


def _in_mm(affine: np.ndarray, header, name: str, meta: dict[str, Any]) -> np.ndarray:
    """The affine in millimetres: a file whose xyzt_units say metres or microns is scaled, as
    ITK reads it (nibabel ignores the units, which would make a head 1,000 times too small)."""
    code = int(header["xyzt_units"]) & 0x07
    factor = _MM_PER_UNIT.get(code, 1.0)
    if factor == 1.0:
        return affine
    meta["spatial_unit"] = {1: "meter", 3: "micron"}[code]
    note(log, logging.INFO, "%s: spatial unit is %s; converted to mm", name, meta["spatial_unit"])
    scaled = affine.copy()
    scaled[:3] *= factor
    return scaled


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
