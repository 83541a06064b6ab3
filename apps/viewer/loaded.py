"""A scan opened in the viewer: read once through ``medssl.io``, kept per browser session.

Uploads are written under a private ``TemporaryDirectory`` (fixed file names, never a
member path of the upload) only for as long as ``medssl.io`` reads them; zip members are
read in memory by ``medssl.io`` with its limits.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medssl.errors import LimitExceededError, UnsupportedInputError
from medssl.io.path_privacy import holds_patient_data, mask_component, mask_label, patient_tokens
from medssl.io.scan import Scan

DEFAULT_MAX_UPLOAD_MB = 512
UNPACK_FACTOR = 8  # a zipped upload may unpack to this many times the upload cap
UPLOAD_SUFFIXES = (".nii.gz", ".nii", ".zip")


def max_upload_bytes() -> int:
    return int(float(os.environ.get("MEDSSL_VIEWER_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB)) * 1024 * 1024)


def app_temp_root() -> str | None:
    """The folder the app may write to (its private temp dirs go under it)."""
    return os.environ.get("MEDSSL_VIEWER_TMP") or None


@dataclass
class Overlay:
    """A label map shown over the scan, in canonical (display) and native (scan) grids."""

    label: np.ndarray  # (X, Y, Z) uint8, canonical grid
    native: np.ndarray  # (X, Y, Z) uint8, the scan's own grid (exports)
    names: dict[int, str]
    origin: str  # "batch" or "model"
    confidence: np.ndarray | None = None  # (X, Y, Z) float32 native grid, prob. of the chosen label
    class_probs: dict[str, float] | None = None
    label_confidence: dict[int, float] | None = None  # mean confidence per label from a batch record


@dataclass
class Loaded:
    scan: Scan  # as read (native grid): model input and export geometry
    view: Scan  # canonical RAS, float32 contiguous: what is drawn
    origin: str  # "upload", "data" or "results"
    path: Path | None = None  # file or folder on disk, when not an upload
    phi: dict[str, Any] = field(default_factory=dict, repr=False)
    tags: dict[bool, list[Any]] = field(default_factory=dict, repr=False)  # reveal -> rows
    overlay: Overlay | None = None
    case_id: str = ""  # PHI-free: a name holding the patient's tokens becomes case-<hash>
    upload: tuple[str, bytes] | None = field(default=None, repr=False)  # (suffix, bytes) of an upload
    series_uid: str | None = None  # the series read, when a DICOM input holds several
    name: str = ""  # what the user opened: data-folder entry, case id or upload file name
    raw_case_id: str = field(default="", repr=False)  # the id before masking: shown only on reveal
    tokens: frozenset[str] = field(default_factory=frozenset, repr=False)  # patient tokens names are checked against

    @property
    def is_dicom(self) -> bool:
        return bool(self.scan.series) or str(self.scan.meta.get("format", "")).startswith("dicom")


def mask_names(loaded: "Loaded", tokens: frozenset[str] = frozenset()) -> None:
    """Add ``tokens`` to the patient tokens the scan's names are checked against (its own are
    set on reading) and, when the name it was read from holds one, replace its case id and
    source by the pseudonym ``case-<hash>`` (``medssl.io.case_id_for``, as ``medssl predict``
    names the case), so exports and the page never carry it. The real id stays in
    ``raw_case_id``, shown only on reveal."""
    from medssl.io import case_id_for

    loaded.tokens = loaded.tokens | tokens
    source = loaded.scan.source
    if not holds_patient_data(source, loaded.tokens):
        return
    loaded.case_id = case_id_for(source, patient=loaded.tokens)  # its pseudonym
    for scan in (loaded.scan, loaded.view):
        scan.case_id = scan.source = loaded.case_id


def shown_name(loaded: "Loaded", reveal: bool, for_file: bool = False) -> str:
    """The open scan's name for the page (or, ``for_file``, for a download's file name): its
    own name, with every path component that holds the patient's name or ID shown as its
    pseudonym ``case-<hash>`` (``medssl.io.path_privacy``) unless reveal is on. A file name
    is always the PHI-free case id."""
    if for_file:
        return mask_component(loaded.case_id or "scan", loaded.tokens)
    name = loaded.name or loaded.raw_case_id or loaded.case_id or "scan"
    return name if reveal else mask_label(name, loaded.tokens)


def shown_case(loaded: "Loaded", reveal: bool) -> str:
    """The case id for the page: the real one only on reveal."""
    return (loaded.raw_case_id or loaded.case_id) if reveal else loaded.case_id


def canonical(scan: Scan) -> Scan:
    """``medssl.io.to_canonical`` without its contiguous copy: axes are flipped/transposed as
    numpy views (nibabel's orientation maths, identical result). Copying a 512x512x300
    Fortran-ordered volume to C order costs seconds; the views slice just as well."""
    start = nib.orientations.io_orientation(scan.affine)
    transform = nib.orientations.ornt_transform(start, nib.orientations.axcodes2ornt("RAS"))
    array = nib.orientations.apply_orientation(np.asarray(scan.array), transform)
    affine = scan.affine @ nib.orientations.inv_ornt_aff(transform, scan.array.shape)
    return dataclasses.replace(scan, array=array, affine=affine, phi={})


def _view(scan: Scan) -> Scan:
    view = canonical(scan)
    if view.array.dtype != np.float32:
        view.array = view.array.astype(np.float32)
    return view


def to_view_grid(scan: Scan, volume: np.ndarray) -> np.ndarray:
    """Reorient an array on ``scan``'s grid (a label, a probability map) exactly as the scan
    is reoriented for display, so an overlay can never be flipped relative to the image."""
    twin = Scan(array=volume, affine=scan.affine, modality="OT", source=scan.source, case_id=scan.case_id)
    return canonical(twin).array


def upload_limits() -> Any:
    """The reader's limits for uploads: unpacked size tied to the upload cap."""
    from medssl.io import ReadLimits

    unpacked = UNPACK_FACTOR * max_upload_bytes()
    return ReadLimits(max_total_bytes=unpacked, max_file_bytes=unpacked)


def _tags(path: Path, limits: Any, series_uid: str | None = None) -> dict[bool, list[Any]]:
    from medssl.io import dicom_tags

    try:
        return {reveal: list(dicom_tags(path, series_uid, reveal_phi=reveal, limits=limits)) for reveal in (False, True)}
    except Exception:  # noqa: BLE001 - a tag browser failure must not stop viewing the pixels
        return {False: [], True: []}


def open_path(path: Path, origin: str, limits: Any = None, series_uid: str | None = None) -> Loaded:
    """Read a NIfTI file or DICOM folder/zip once; patient fields are kept apart from ``scan``."""
    from medssl.io import read_scan

    scan = read_scan(path, reveal_phi=True, limits=limits, series_uid=series_uid)
    phi, scan.phi = dict(scan.phi), {}
    loaded = Loaded(scan=scan, view=_view(scan), origin=origin, path=path, phi=phi, case_id=scan.case_id,
                    series_uid=series_uid, raw_case_id=scan.case_id)  # fmt: skip
    mask_names(loaded, patient_tokens(phi))
    if loaded.is_dicom:
        loaded.tags = _tags(path, limits, series_uid)
    return loaded


DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def upload_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in (*UPLOAD_SUFFIXES, *DICOM_SUFFIXES):
        if lower.endswith(suffix):
            return suffix
    raise UnsupportedInputError(
        f"{safe_name(name)}: expected a NIfTI file (.nii, .nii.gz), DICOM files (.dcm) or a zipped DICOM "
        f"series (.zip), got {Path(name).suffix or 'no extension'}",
        source=safe_name(name),
    )


def safe_name(name: str) -> str:
    """The base name of an upload with anything but letters, digits, ``.``, ``_``, ``-``
    replaced: shown in messages and used inside a private temp folder, never as a path."""
    import re

    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(str(name).replace("\\", "/")).name).lstrip(".")
    return base[-120:] or "upload"


def _check_size(total: int, what: str) -> None:
    cap = max_upload_bytes()
    if total > cap:
        raise LimitExceededError(
            f"{what}: {total / 2**20:.1f} MB is over the viewer's {cap / 2**20:.0f} MB cap "
            "(MEDSSL_VIEWER_MAX_UPLOAD_MB)",
            source=what,
        )


def _as_upload(loaded: Loaded, shown: str) -> None:
    """An upload's ids are "upload"; its file name is shown (masked when it holds the
    patient's name or ID, see ``shown_name``)."""
    loaded.case_id, loaded.raw_case_id, loaded.name = "upload", "upload", shown
    for scan in (loaded.scan, loaded.view):
        scan.case_id, scan.source = "upload", "upload"


def open_upload(name: str, data: bytes) -> Loaded:
    """Read one uploaded file. Its name picks the reader and labels messages; on disk it is
    a cleaned base name inside a private temporary folder."""
    suffix = upload_suffix(name)
    if suffix in DICOM_SUFFIXES:
        return open_uploads([(name, data)])
    shown = safe_name(name)
    _check_size(len(data), shown)
    with tempfile.TemporaryDirectory(prefix="medssl-viewer-", dir=app_temp_root()) as tmp:
        path = Path(tmp) / (shown if shown.lower().endswith(suffix) else f"upload{suffix}")
        path.write_bytes(data)
        loaded = open_path(path, origin="upload", limits=upload_limits())
    loaded.path = None  # the temporary copy is gone
    _as_upload(loaded, shown)
    if suffix == ".zip":
        loaded.upload = (suffix, data)  # kept (already in memory) so a DICOM SEG can reference it
    return loaded


def open_uploads(files: list[tuple[str, bytes]]) -> Loaded:
    """One NIfTI or zip, or any number of DICOM files of one series (written as IM00001.dcm
    ... in a private folder, read as a folder; kept zipped in memory for the DICOM SEG)."""
    if not files:
        raise UnsupportedInputError("no file uploaded", source="upload")
    suffixes = [upload_suffix(name) for name, _ in files]
    if len(files) == 1 and suffixes[0] not in DICOM_SUFFIXES:
        return open_upload(*files[0])
    if any(s not in DICOM_SUFFIXES for s in suffixes):
        raise UnsupportedInputError(
            f"{len(files)} files: upload several files only as the DICOM files (.dcm) of one series, "
            "or one NIfTI / zip on its own",
            source="upload",
        )
    shown = safe_name(files[0][0]) if len(files) == 1 else f"{len(files)} DICOM files"
    _check_size(sum(len(d) for _, d in files), shown)
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for n, (_, data) in enumerate(files, start=1):
            zf.writestr(f"IM{n:05d}.dcm", data)
    with tempfile.TemporaryDirectory(prefix="medssl-viewer-", dir=app_temp_root()) as tmp:
        folder = Path(tmp) / "series"
        folder.mkdir()
        names = [shown] if len(files) == 1 else [f"IM{n:05d}.dcm" for n in range(1, len(files) + 1)]
        for name, (_, data) in zip(names, files):
            (folder / name).write_bytes(data)
        loaded = open_path(folder, origin="upload", limits=upload_limits())
    loaded.path = None
    _as_upload(loaded, shown)
    loaded.upload = (".zip", buf.getvalue())
    return loaded


def world_position(view: Scan, ijk: tuple[int, int, int]) -> tuple[float, float, float]:
    """RAS millimetres of voxel ``ijk`` of the displayed (canonical) volume."""
    x, y, z, _ = view.affine @ np.array([*ijk, 1.0])
    return float(x), float(y), float(z)


def upload_label_overlay(loaded: Loaded, name: str, data: bytes) -> Overlay:
    """An uploaded label map shown over the open scan (same grid required), read from a
    private temporary copy like every upload."""
    from .results import label_overlay

    suffix = upload_suffix(name)
    if suffix not in (".nii", ".nii.gz"):
        raise UnsupportedInputError(f"{safe_name(name)}: a label map must be NIfTI (.nii, .nii.gz)", source=safe_name(name))
    _check_size(len(data), safe_name(name))
    with tempfile.TemporaryDirectory(prefix="medssl-viewer-", dir=app_temp_root()) as tmp:
        path = Path(tmp) / f"label{suffix}"
        path.write_bytes(data)
        return label_overlay(loaded, path)
