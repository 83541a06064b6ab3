"""Builders of small DICOM series / NIfTI files for the io tests (no tests here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

SENTINEL_NAME = "SENTINEL^PHI^DONOTLEAK"
SENTINEL_ID = "PHI-SENTINEL-0001"


def make_dataset(pixels: np.ndarray, position, *, iop=(1, 0, 0, 0, 1, 0), spacing=(0.7, 0.8), modality="CT",
                 series_uid="1.2.3.4.5", slope=1.0, intercept=-1024.0, number=1) -> Dataset:  # fmt: skip
    """One uint16 slice; ``pixels`` is (Rows, Columns)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = SENTINEL_NAME, SENTINEL_ID, "19000101"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3.4", series_uid
    ds.SeriesDescription = "test series"
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in iop]
    ds.PixelSpacing = [float(spacing[0]), float(spacing[1])]
    ds.SliceThickness = 1.0
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    return ds


def make_series(folder: Path, n: int = 6, *, rows: int = 10, cols: int = 8, step: float = 2.0,
                origin=(-10.0, -20.0, 30.0), iop=(1, 0, 0, 0, 1, 0), offsets=None, shifts=None,
                slopes=None, intercepts=None, intercept: float = -1024.0, seed: int = 0, prefix: str = "IM",
                **kw) -> np.ndarray:  # fmt: skip
    """Write ``n`` slices in shuffled file-name order; return stored values (n, rows, cols)
    in position order. ``offsets`` (mm along the normal) and ``shifts`` (in-plane LPS mm
    vectors per slice) bend the geometry."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    stored = rng.integers(0, 3000, size=(n, rows, cols)).astype(np.uint16)
    row_dir, col_dir = np.array(iop[:3], float), np.array(iop[3:], float)
    normal = np.cross(row_dir, col_dir)
    offsets = np.arange(n) * step if offsets is None else np.asarray(offsets, float)
    names = rng.permutation(n)
    for k in range(n):
        pos = np.array(origin) + offsets[k] * normal + (np.zeros(3) if shifts is None else np.asarray(shifts[k]))
        ds = make_dataset(stored[k], pos, iop=iop, number=k + 1,
                          slope=1.0 if slopes is None else slopes[k],
                          intercept=intercept if intercepts is None else intercepts[k], **kw)  # fmt: skip
        ds.save_as(folder / f"{prefix}{names[k]:04d}.dcm", enforce_file_format=True)
    return stored
