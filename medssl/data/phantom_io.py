"""Writing phantom cohorts: NIfTI pairs, CT DICOM series, ``labels.json`` and an MSD-style
``dataset.json``. Layout under the output folder::

    nifti/phantom_000.nii.gz         integer HU (int16), the same values as the DICOM twin
    nifti/phantom_000_label.nii.gz   uint8 label map (``LABELS``)
    dicom/phantom_000/IM0000.dcm ... one CT series, sorted along the slice axis
    labels.json, dataset.json

Subject ``i`` of a cohort with seed ``s`` is ``make_phantom(subject_seed(s, i))``, so it is
the same subject whatever the cohort size."""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from medssl.atomic import atomic_write_text
from medssl.data.phantom import LABELS, check_options, make_phantom, phantom_phase
from medssl.errors import ConfigError
from medssl.io import write_nifti

FORMATS = ("nifti", "dicom", "both")
RESCALE_INTERCEPT = -1024  # stored uint16 = HU + 1024, as many scanners do


def subject_seed(seed: int, index: int) -> int:
    """Seed of subject ``index`` in a cohort: independent of the cohort size."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def subject_name(index: int) -> str:
    return f"phantom_{index:03d}"


def _atomic_json(obj: object, path: Path) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def _uid(seed: int, *parts: object) -> str:
    return generate_uid(entropy_srcs=["medssl-phantom", str(seed), *map(str, parts)])


def write_dicom_series(image: np.ndarray, affine: np.ndarray, out_dir: Path, *,
                       seed: int, index: int = 0) -> list[Path]:
    """Writes ``image`` (X, Y, Z) integer HU as a CT series ``IM0000.dcm`` ... in ``out_dir``.

    Slice k is ``image[:, :, k].T`` (rows = j, columns = i); positions and orientation are
    the LPS form of ``affine``, so the series has the same voxel grid as the NIfTI twin.
    UIDs are derived from ``seed`` and ``index`` (same cohort, same UIDs)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :]  # RAS -> LPS, columns: i, j, k, origin
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    row_dir, col_dir = lps[:, 0] / spacing[0], lps[:, 1] / spacing[1]
    stored = np.clip(np.rint(image) - RESCALE_INTERCEPT, 0, 65535).astype(np.uint16)
    study, series, frame = _uid(seed, index, "study"), _uid(seed, index, "series"), _uid(seed, index, "frame")
    base = _base_dataset(index, study, series, frame)
    base.Rows, base.Columns = int(image.shape[1]), int(image.shape[0])
    base.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]  # row spacing (along j), column spacing (along i)
    base.SliceThickness = base.SpacingBetweenSlices = _ds(spacing[2])
    base.ImageOrientationPatient = [_ds(v) for v in (*row_dir, *col_dir)]
    paths = []
    for k in range(image.shape[2]):
        ds = base.copy()
        ds.file_meta = base.file_meta.copy()
        sop = _uid(seed, index, "sop", k)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.InstanceNumber = k + 1
        position = lps[:, 3] + lps[:, 2] * k
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.SliceLocation = _ds(position[2])
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        path = out_dir / f"IM{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _ds(value: float) -> str:
    """A DS string (at most 16 chars) that keeps sub-micrometre precision."""
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _base_dataset(index: int, study: str, series: str, frame: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Modality = "CT"
    ds.Manufacturer = "medssl phantom"
    # Not the folder's own name (phantom_NNN): a folder named after its patient is masked
    # as patient data, and the demo's phantoms should keep their readable ids.
    ds.PatientName = f"SYNTHETIC^SUBJECT{index:03d}"
    ds.PatientID = f"SYN-{index:03d}"
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyDate = ds.SeriesDate = "20000101"
    ds.StudyTime = ds.SeriesTime = "000000"
    ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "", "", "1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.SeriesNumber = 1
    ds.SeriesDescription = "phantom torso CT"
    ds.BodyPartExamined = "ABDOMEN"  # unpaired: General Series Laterality (type 2C) stays absent
    ds.AcquisitionNumber = 1  # type 2 (CT Image)
    ds.PatientPosition = "HFS"
    ds.PositionReferenceIndicator = ""
    ds.KVP = "120"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = str(RESCALE_INTERCEPT), "1", "HU"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    return ds


def _write_subject(out: str, seed: int, index: int, fmt: str, shape, spacing,
                   appearance: str = "uniform", anatomy: str = "regular", lesions: str = "small",
                   dose: str = "standard") -> dict[str, str]:
    root = Path(out)
    name = subject_name(index)
    image, label, affine = make_phantom(subject_seed(seed, index), shape=shape, spacing=spacing,
                                        appearance=appearance, anatomy=anatomy, lesions=lesions, dose=dose)
    entry = {"image": f"nifti/{name}.nii.gz", "label": f"nifti/{name}_label.nii.gz"}
    if appearance == "multiphase":
        entry["phase"] = phantom_phase(subject_seed(seed, index))
    write_nifti(label.astype(np.uint8), affine, root / entry["label"])  # labels are NIfTI always
    if fmt in ("nifti", "both"):
        write_nifti(image.astype(np.int16), affine, root / entry["image"])
    if fmt in ("dicom", "both"):
        write_dicom_series(image, affine, root / "dicom" / name, seed=seed, index=index)
    if fmt == "dicom":
        entry["image"] = f"dicom/{name}"
    return entry


def synth_cohort(out: Path, n: int, *, fmt: str = "both", seed: int = 0,
                 shape: Sequence[int] | None = None, spacing: Sequence[float] | None = None,
                 workers: int = 1, appearance: str = "uniform", anatomy: str = "regular",
                 lesions: str = "small", dose: str = "standard") -> dict:
    """Writes ``n`` phantom subjects to ``out`` and returns the dataset.json content
    (multiphase entries also name their contrast phase)."""
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    check_options(ConfigError, appearance=appearance, anatomy=anatomy, lesions=lesions, dose=dose)
    out = Path(out)
    (out / "nifti").mkdir(parents=True, exist_ok=True)
    if fmt in ("dicom", "both"):
        (out / "dicom").mkdir(parents=True, exist_ok=True)
    shape_t = tuple(int(v) for v in shape) if shape else None
    spacing_t = tuple(float(v) for v in spacing) if spacing else None
    args = [(str(out), seed, i, fmt, shape_t, spacing_t, appearance, anatomy, lesions, dose) for i in range(n)]
    if workers > 1 and n > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            training = list(pool.map(_write_subject, *zip(*args)))
    else:
        training = [_write_subject(*a) for a in args]
    dataset = {
        "name": "medssl-phantom",
        "description": f"procedural CT-like torso phantoms, seed {seed}, {appearance} appearance, {anatomy} anatomy, {lesions} lesions, {dose} dose",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": LABELS,
        "numTraining": n,
        "numTest": 0,
        "training": training,
        "test": [],
    }
    _atomic_json(LABELS, out / "labels.json")
    _atomic_json(dataset, out / "dataset.json")
    return dataset
