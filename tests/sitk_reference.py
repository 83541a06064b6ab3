"""SimpleITK as the independent reader of DICOM series, for tests and benchmarks that check
medssl's voxels and geometry against it."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def sitk_read_ras(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The series in ``folder`` as SimpleITK reads it: voxels (X, Y, Z) and the voxel -> RAS affine."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    array = sitk.GetArrayFromImage(img).transpose(2, 1, 0)  # (Z, Y, X) -> (X, Y, Z)
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    return array, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # LPS -> RAS
